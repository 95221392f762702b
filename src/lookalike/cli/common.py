"""What every ``lookalike`` command shares: ``--data-dir``, the engine, errors, output.

Kept apart from ``cli.main`` so that the command modules (``cli.faces``, ``cli.people``)
import it without importing the group that registers them.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from lookalike.answers import Answer, IndexSummary
from lookalike.errors import BadArgument, LookalikeError
from lookalike.files import shown
from lookalike.people.service import ClusterReport
from lookalike.search.engine import Lookalike
from lookalike.settings import Settings, get_settings

F = TypeVar("F", bound=Callable[..., Any])


# Exit status of every command (README, "Exit status"): 0 all went well, 1 some inputs
# failed or the work could not be done, 2 the command was used wrongly (click's own usage
# errors exit 2 as well).
OK = 0
FAILED = 1
USAGE = 2


def fail(message: str, code: int = FAILED) -> NoReturn:
    """Print ``lookalike: error: message`` on stderr and exit with ``code``."""
    click.echo(f"lookalike: error: {message}", err=True)
    sys.exit(code)


def exit_code(exc: LookalikeError) -> int:
    """USAGE for an invalid argument, FAILED for anything else that went wrong."""
    return USAGE if isinstance(exc, BadArgument) else FAILED


def fail_with(exc: LookalikeError | OSError) -> NoReturn:
    """``fail`` with the message and exit status an error calls for."""
    if isinstance(exc, LookalikeError):
        fail(exc.message, exit_code(exc))
    where = f"{shown(exc.filename)}: " if exc.filename else ""
    fail(f"{where}{exc.strerror or exc}")


def data_dir_option(fn: F) -> F:
    """``--data-dir`` on every command (it may also be given before the command)."""
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Data folder (default: $LOOKALIKE_DATA_DIR or ~/.local/share/lookalike).",
    )(fn)


def shared_parts_options(fn: F) -> F:
    """``--catalog-url``, ``--cache-url`` and ``--broker-url``: the shared parts a command
    uses (default: their ``LOOKALIKE_*`` settings; none: everything in the data folder)."""
    helps = {
        "catalog": "Shared catalog, postgresql://... (default: $LOOKALIKE_CATALOG_URL, "
        "else the SQLite file in the data folder).",
        "cache": "Result cache, redis://... or redis+cluster://host:port,... "
        "(default: $LOOKALIKE_CACHE_URL, else none).",
        "broker": "Celery broker for queued indexing, redis://... "
        "(default: $LOOKALIKE_BROKER_URL, else none).",
    }
    for part, text in reversed(helps.items()):
        fn = click.option(f"--{part}-url", default=None, metavar="URL", help=text)(fn)
    return fn


def command_settings(data_dir: Path | None = None) -> Settings:
    """The settings of the running command: the environment, overridden by the options
    given to the group (``lookalike --catalog-url ... CMD``) and then by ``data_dir``."""
    given = dict(click.get_current_context().obj or {})
    if data_dir is not None:
        given["data_dir"] = data_dir
    return get_settings(**given)


def with_engine(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Open the data folder for the command; errors become one line and an exit status."""

    @functools.wraps(fn)
    def wrapper(*args: Any, data_dir: Path | None = None, **kwargs: Any) -> Any:
        try:
            with Lookalike(command_settings(data_dir)) as engine:
                return fn(engine, *args, **kwargs)
        except (LookalikeError, OSError) as exc:
            # OSError: the file system refused something the engine did not foresee (a
            # full disk, a read-only data folder); one line, not a traceback.
            fail_with(exc)

    return wrapper


def echo_json(answer: Answer) -> None:
    """``answer`` as one JSON document on one line of stdout: the shape the API gives."""
    click.echo(json.dumps(answer.model_dump(mode="json")))


def plural(n: int, word: str, many: str | None = None) -> str:
    """``"1 face"``, ``"3 faces"``."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def cluster_summary(report: ClusterReport) -> str:
    """One line on what a clustering run did, e.g. ``3 unknown faces: 1 recognised (Eileen
    1), 1 joined a cluster, 1 new cluster; 4 clusters in all``."""
    if report.faces == 0 and not report.merged:
        return f"no new unknown faces; {plural(report.clusters, 'cluster')} in all"
    who = ", ".join(f"{name} {n}" for name, n in sorted(report.people.items()))
    merged = f", {plural(report.merged, 'cluster')} merged away" if report.merged else ""
    return (
        f"{plural(report.faces, 'unknown face')}: {report.recognised} recognised"
        f"{f' ({who})' if who else ''}, {report.joined} joined a cluster, "
        f"{plural(report.started, 'new cluster')}{merged}; "
        f"{plural(report.clusters, 'cluster')} in all"
    )


def print_index_summary(summary: IndexSummary, as_json: bool) -> None:
    """What an index run or job did: JSON, or a line per failed file (stderr), the counts
    and a line on faces."""
    if as_json:
        echo_json(summary)
        return
    for f in summary.failed:
        click.echo(f"skipped {f.path}: {f.error}", err=True)
    click.echo(
        f"{summary.indexed} indexed, {summary.unchanged} unchanged, {summary.duplicates} "
        f"duplicates, {summary.removed} removed, {len(summary.failed)} failed"
    )
    if summary.faces is not None:
        line = f"faces: {summary.faces} found"
        if summary.people is not None:
            line += f"; {cluster_summary(ClusterReport(**summary.people.model_dump()))}"
        click.echo(line)
