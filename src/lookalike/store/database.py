"""What a catalog backend's database object implements, and the schema-migration rule they share.

A backend (the embedded SQLite, a shared PostgreSQL) opens one :class:`Database` and hands it
to the catalog, face and service stores (:mod:`lookalike.store.sql_catalog`, ...): they read
and write through its public methods, in its transactions, and never open their own
connections. Their SQL is written once, for both databases, with ``?`` placeholders; what
differs (placeholder style, how a path is stored) is the database object's business. Its
schema is brought up to date, or refused as too new, by the frozen migrations of
:mod:`lookalike.store.migrations`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from lookalike.errors import SchemaTooNew

# What a transaction hands its body: the backend's connection (or cursor), to run SQL on.
Tx = TypeVar("Tx")
Tx_co = TypeVar("Tx_co", covariant=True)


class Cursor(Protocol):
    """What running one statement in a transaction gives back."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Handle(Protocol):
    """What a transaction hands the stores: statements with ``?`` placeholders, run in it."""

    def execute(self, sql: str, args: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> object: ...


# What a ``path`` column holds: text or bytes, as the backend stores a path.
PathParam = str | bytes


class Database(Protocol[Tx_co]):
    """One open catalog database, shared by the stores of a backend."""

    # Where the database is, for messages: a file path, or a URL without its password.
    where: str

    def transaction(self) -> AbstractContextManager[Tx_co]:
        """A write transaction, taken at once: committed when the body returns, rolled back
        whole when it raises. Yields the handle to run the transaction's SQL on."""
        ...

    def query(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        """The rows of one read-only statement, as sequences of column values."""
        ...

    def schema_version(self) -> int:
        """The schema version the database is at (that of the last migration applied)."""
        ...

    def path_param(self, path: str) -> PathParam:
        """``path`` as its ``path`` columns store it, losslessly (a name that is not UTF-8
        arrives with surrogate escapes); ``sql_util.path_value`` gives ``path`` back."""
        ...

    def path_ranges(self, root: str) -> list[tuple[PathParam, PathParam, PathParam]]:
        """``(exact, low, high)`` per range of stored paths to scan for ``root`` and the
        paths inside it: ``path = exact OR (path >= low AND path < high)``."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Migration(Generic[Tx]):
    """One schema step: ``apply`` takes the schema from ``version - 1`` to ``version``,
    inside the transaction whose handle it is given."""

    version: int
    apply: Callable[[Tx], None]


def pending_migrations(
    found: int, chain: Sequence[Migration[Tx]], where: str
) -> Sequence[Migration[Tx]]:
    """The steps of ``chain`` (versions 1, 2, ... in order) that a database at schema
    ``found`` lacks; SchemaTooNew when it is newer than the chain's last step."""
    latest = len(chain)
    if found > latest:
        raise SchemaTooNew(
            f"{where}: catalog schema version {found} is newer than this lookalike "
            f"supports ({latest}); upgrade lookalike"
        )
    return chain[found:]
