"""The shared catalog's database: PostgreSQL through psycopg 3 and a bounded connection pool,
shared by the catalog, face and service stores (a :class:`~lookalike.store.database.Database`).

Several processes on several machines use one catalog. Each write transaction first takes
one advisory lock, so writers take turns as SQLite's do: the stores' check-then-write steps
(one image per SHA-256, one person per caseless name) hold, and two transactions can never
deadlock on the rows they both touch (every vector write bumps its descriptor's one counter
row anyway). Reads take no lock.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from lookalike.errors import Unavailable
from lookalike.store.database import Migration, PathParam, pending_migrations
from lookalike.store.migrations.postgres import MIGRATIONS
from lookalike.store.sql_util import byte_ranges

Connection = psycopg.Connection[tuple[object, ...]]

# Connections per process: the server's threads share them, waiting at most POOL_WAIT_S.
POOL_SIZE = 8
POOL_WAIT_S = 10.0
# Seconds to wait for the server to answer a new connection.
CONNECT_TIMEOUT_S = 5
# The advisory lock every write transaction takes first ("lookalik" in ASCII).
WRITER_LOCK = 0x6C6F6F6B616C696B
SCHEMA_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)"


class PostgresDatabase:
    """The PostgreSQL database at ``url`` (``postgresql://user:password@host:port/dbname``),
    migrated to the last step of ``migrations`` (SchemaTooNew if it is newer).

    Unavailable, naming the URL without its password, when the URL is malformed or the
    server does not answer or refuses it, at opening and at any later statement.
    """

    def __init__(
        self,
        url: str,
        migrations: Sequence[Migration[Connection]] = MIGRATIONS,
        *,
        pool_size: int = POOL_SIZE,
    ) -> None:
        self.where = _where(url)
        with self._reported():
            # Every connection in autocommit (transactions are explicit); a connect_timeout
            # in the URL wins over ours.
            options: dict[str, Any] = {"autocommit": True}
            if "connect_timeout" not in conninfo_to_dict(url):
                options["connect_timeout"] = CONNECT_TIMEOUT_S
            # One plain connection first: its failure says why (the pool's would only
            # time out), and it migrates before any store runs a statement.
            with psycopg.connect(url, **options) as conn:
                self._migrate(conn, migrations)
            self._pool: ConnectionPool[Connection] = ConnectionPool(
                url,
                kwargs=options,
                min_size=1,
                max_size=pool_size,
                timeout=POOL_WAIT_S,
                # No check when a connection is handed out (a round trip per statement,
                # a third of a search's catalog time): one the server dropped fails its
                # first statement and is replaced then (_first_statement).
                name="lookalike-catalog",
                open=True,
            )

    @contextmanager
    def _reported(self) -> Iterator[None]:
        """The server not answering, refusing the connection or going away (and a malformed
        URL) as one line of Unavailable that names the catalog."""
        try:
            yield
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            raise Unavailable(f"catalog {self.where}: {_first_line(exc)}") from None
        except psycopg.ProgrammingError as exc:
            if exc.sqlstate is not None:  # an error in a statement, not in the URL
                raise
            raise Unavailable(f"catalog {self.where}: malformed URL ({_first_line(exc)})") from None

    @contextmanager
    def _pooled(
        self, first: str, args: Sequence[object], *, transaction: bool
    ) -> Iterator[tuple[Connection, Any]]:
        """A pooled connection (in a transaction, or in autocommit for a lone read), and the
        rows of its ``first`` statement (PostgreSQL's ``$1`` placeholders).

        A connection the server dropped since it was pooled (a restart, an idle timeout)
        fails that statement before anything else ran on it: the pool then checks its idle
        connections, replacing the dead ones, and the statement runs once more on another.
        """
        for attempt in (1, 2):
            with self._reported(), contextlib.ExitStack() as stack:
                conn = stack.enter_context(self._pool.connection())
                try:
                    if transaction:
                        stack.enter_context(conn.transaction())
                    rows = psycopg.RawCursor(conn).execute(first, args).fetchall()
                except psycopg.OperationalError:
                    if attempt == 2 or not conn.closed:
                        raise
                else:
                    yield conn, rows
                    return
            self._pool.check()
        raise AssertionError("unreachable")

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """A pooled connection, in a transaction that holds the writer lock."""
        lock = "SELECT pg_advisory_xact_lock($1)"
        with self._pooled(lock, [WRITER_LOCK], transaction=True) as (conn, _):
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[_Handle]:
        """A write transaction on one pooled connection, taken in turn with every other
        writer of the catalog (the advisory lock), committed or rolled back whole."""
        with self._connection() as conn:
            yield _Handle(conn)

    def query(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        """The rows of one read statement (``?`` placeholders), on a pooled connection."""
        with self._pooled(_numbered(sql), args, transaction=False) as (_, rows):
            return list(rows)

    def _migrate(self, conn: Connection, migrations: Sequence[Migration[Connection]]) -> None:
        """Apply the steps the database lacks, in one transaction with the version they
        reach; the advisory lock makes processes opening a new catalog at once take turns."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [WRITER_LOCK])
            conn.execute(SCHEMA_TABLE)
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            found = 0 if row is None else int(str(row[0]))
            steps = pending_migrations(found, migrations, self.where)
            for step in steps:
                step.apply(conn)
            if steps:
                conn.execute("DELETE FROM schema_version")
                conn.execute("INSERT INTO schema_version VALUES (%s)", [steps[-1].version])

    def schema_version(self) -> int:
        """The version in the ``schema_version`` table: the last schema step applied."""
        return int(self.query("SELECT version FROM schema_version")[0][0])

    def path_param(self, path: str) -> PathParam:
        """The path's file-system bytes (``bytea``), whatever its encoding."""
        return os.fsencode(path)

    def path_ranges(self, root: str) -> list[tuple[PathParam, PathParam, PathParam]]:
        return byte_ranges(root)

    def close(self) -> None:
        self._pool.close()


class _Handle:
    """A transaction's connection with the stores' ``?`` placeholders."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Sequence[Any] = (), /) -> psycopg.RawCursor[Any]:
        return psycopg.RawCursor(self._conn).execute(_numbered(sql), args)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> None:
        with psycopg.RawCursor(self._conn) as cur:
            cur.executemany(_numbered(sql), rows)


@functools.lru_cache(maxsize=1024)
def _numbered(sql: str) -> str:
    """``sql`` with PostgreSQL's own ``$1, $2, ...`` for its ``?`` placeholders (the stores'
    SQL holds no ``?`` of its own: no literal needs one), for a raw cursor: psycopg need not
    parse the statement, which it does anew for each long multi-row ``VALUES``."""
    parts = sql.split("?")
    return parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], 1))


def _first_line(exc: BaseException) -> str:
    """The first line of an error's message (libpq adds hints on the lines after)."""
    lines = str(exc).strip().splitlines()
    return " ".join(lines[0].split()) if lines else type(exc).__name__


def _where(url: str) -> str:
    """``url`` as messages show it: ``postgresql://user@host:port/dbname``, never with a
    password (a malformed one: the password part cut out)."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        cut = re.sub(r"(?<=://)([^/@:]*):[^/@]*@", r"\1@", url)
        return re.sub(r"password=[^&\s]*", "password=...", cut)
    user = f"{params['user']}@" if params.get("user") else ""
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{user}{params.get('host', '')}{port}/{params.get('dbname', '')}"
