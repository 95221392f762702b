"""The Celery app of queued indexing, configured from the settings passed down.

Tasks are acknowledged only once done (``acks_late``), one at a time per worker process
(prefetch 1), and a task whose worker process dies is put back (``reject_on_worker_lost``).
A worker killed outright (SIGKILL, a lost machine) never acknowledges its chunk: Redis hands
it to another worker once ``queue_redelivery_s`` (the transport's visibility timeout) has
passed since it was taken.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from celery import Celery

from lookalike.errors import Unavailable
from lookalike.settings import Settings

# The tasks: index one chunk of a job's files; re-cluster every face.
INDEX_CHUNK = "lookalike.index_chunk"
CLUSTER = "lookalike.cluster"
QUEUE = "lookalike"
_SCHEMES = ("redis", "rediss")


def broker_url(settings: Settings) -> str:
    """The broker URL of ``settings``; Unavailable when none is set or it is malformed."""
    url = settings.broker_url
    if not url:
        raise Unavailable("broker: no broker URL is set (LOOKALIKE_BROKER_URL or --broker-url)")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a port that is not a number)
    except ValueError as exc:
        raise Unavailable(f"broker: malformed URL {hidden_url(url)!r}: {exc}") from None
    if parts.scheme not in _SCHEMES or not parts.hostname:
        raise Unavailable(
            f"broker: malformed URL {hidden_url(url)!r}: expected redis://host:port/db or rediss://..."
        )
    return url


def make_app(settings: Settings) -> Celery:
    """A Celery app for ``settings``: Redis broker at ``broker_url``, no result backend."""
    url = broker_url(settings)
    timeout = settings.broker_timeout_s
    app = Celery("lookalike", set_as_current=False)
    app.conf.update(
        broker_url=url,
        broker_connection_timeout=timeout,
        broker_transport_options=_transport_options(settings),
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # A failed publish is one error, not minutes of retrying.
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        broker_connection_retry_on_startup=False,
    )
    return app


def _transport_options(settings: Settings) -> dict[str, Any]:
    timeout = settings.broker_timeout_s
    redelivery = settings.queue_redelivery_s
    return {
        "visibility_timeout": redelivery,
        # Look for chunks past their time every few seconds (kombu's default sweep comes
        # every 100 s), so a dead worker's chunk moves on soon after queue_redelivery_s.
        "unacked_restore_interval": max(1, min(10, redelivery // 4)),
        "unacked_restore_throttle": 1,
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "max_connections": 8,
    }


def check_broker(app: Celery, settings: Settings) -> None:
    """Connect to the broker once; Unavailable (one line naming it) if it does not answer
    within ``broker_timeout_s``."""
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=settings.broker_timeout_s)
    except Exception as exc:  # kombu and redis-py raise many kinds; all mean "no broker"
        raise Unavailable(
            f"broker: no answer from {hidden_url(app.conf.broker_url)} ({_first_line(exc)})"
        ) from None


def hidden_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (it goes into error messages)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<malformed URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
