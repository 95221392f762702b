"""API keys, background jobs and their chunks, and shared values (``meta``) in the catalog's
database (SQLite's schema steps 3 and 5, the same tables in PostgreSQL's).

Kept in the catalog's database so that every server process of one data folder, or of one
shared catalog, sees the same keys and jobs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from lookalike.store.base import ChunkRow, JobRow, KeyRow
from lookalike.store.database import Database, Handle

_KEY = "id, name, prefix, scope, created_at, revoked_at, last_used_at, digest"
_JOB = "id, kind, target, status, done, total, report, error, created_at, updated_at"
_CHUNK = "job_id, chunk, files, status, report, error, updated_at"


def _key(r: Sequence[Any]) -> KeyRow:
    return KeyRow(
        int(r[0]),
        str(r[1]),
        str(r[2]),
        str(r[3]),
        float(r[4]),
        None if r[5] is None else float(r[5]),
        None if r[6] is None else float(r[6]),
        str(r[7]),
    )


def _job(r: Sequence[Any]) -> JobRow:
    return JobRow(
        int(r[0]),
        str(r[1]),
        str(r[2]),
        str(r[3]),
        int(r[4]),
        int(r[5]),
        None if r[6] is None else json.loads(r[6]),
        None if r[7] is None else str(r[7]),
        float(r[8]),
        float(r[9]),
    )


def _chunk(r: Sequence[Any]) -> ChunkRow:
    return ChunkRow(
        int(r[0]),
        int(r[1]),
        int(r[2]),
        str(r[3]),
        None if r[4] is None else json.loads(r[4]),
        None if r[5] is None else str(r[5]),
        float(r[6]),
    )


class SqlServiceStore:
    """The ServiceStore of an open database (SQLite or PostgreSQL)."""

    def __init__(self, database: Database[Handle]) -> None:
        self.database = database

    def add_key(self, name: str, prefix: str, digest: str, scope: str) -> KeyRow:
        with self.database.transaction() as db:
            key_id = db.execute(
                "INSERT INTO api_keys (name, prefix, digest, scope, created_at) "
                "VALUES (?, ?, ?, ?, ?) RETURNING id",
                [name, prefix, digest, scope, time.time()],
            ).fetchone()[0]
        rows = self.database.query(f"SELECT {_KEY} FROM api_keys WHERE id = ?", [key_id])
        return _key(rows[0])

    def key_by_prefix(self, prefix: str) -> KeyRow | None:
        rows = self.database.query(f"SELECT {_KEY} FROM api_keys WHERE prefix = ?", [prefix])
        return _key(rows[0]) if rows else None

    def api_keys(self) -> list[KeyRow]:
        return [_key(r) for r in self.database.query(f"SELECT {_KEY} FROM api_keys ORDER BY id")]

    def revoke_key(self, key_id: int) -> bool:
        with self.database.transaction() as db:
            cur = db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                [time.time(), key_id],
            )
            return cur.rowcount > 0

    def touch_key(self, key_id: int) -> None:
        with self.database.transaction() as db:
            db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", [time.time(), key_id])

    def add_job(self, kind: str, target: str) -> JobRow:
        with self.database.transaction() as db:
            now = time.time()
            job_id = int(
                db.execute(
                    "INSERT INTO jobs (kind, target, status, created_at, updated_at) "
                    "VALUES (?, ?, 'queued', ?, ?) RETURNING id",
                    [kind, target, now, now],
                ).fetchone()[0]
            )
        found = self.job(job_id)
        assert found is not None
        return found

    def update_job(
        self,
        job_id: int,
        *,
        status: str | None = None,
        done: int | None = None,
        total: int | None = None,
        report: dict[str, object] | None = None,
        error: str | None = None,
    ) -> None:
        sets = ["updated_at = ?"]
        args: list[object] = [time.time()]
        for column, value in (("status", status), ("done", done), ("total", total)):
            if value is not None:
                sets.append(f"{column} = ?")
                args.append(value)
        if report is not None:
            sets.append("report = ?")
            args.append(json.dumps(report))
        if error is not None:
            sets.append("error = ?")
            args.append(error)
        with self.database.transaction() as db:
            db.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", [*args, job_id])

    def job(self, job_id: int) -> JobRow | None:
        rows = self.database.query(f"SELECT {_JOB} FROM jobs WHERE id = ?", [job_id])
        return _job(rows[0]) if rows else None

    def jobs(self, limit: int = 100) -> list[JobRow]:
        rows = self.database.query(f"SELECT {_JOB} FROM jobs ORDER BY id DESC LIMIT ?", [limit])
        return [_job(r) for r in rows]

    def add_chunks(self, job_id: int, sizes: Sequence[int]) -> None:
        now = time.time()
        with self.database.transaction() as db:
            db.executemany(
                "INSERT INTO job_chunks (job_id, chunk, files, updated_at) VALUES (?, ?, ?, ?)",
                [(job_id, i, int(n), now) for i, n in enumerate(sizes)],
            )
            db.execute(
                "UPDATE jobs SET total = ?, updated_at = ? WHERE id = ?",
                [sum(int(n) for n in sizes), now, job_id],
            )

    def finish_chunk(
        self,
        job_id: int,
        chunk: int,
        *,
        report: dict[str, object] | None = None,
        error: str | None = None,
    ) -> bool:
        now = time.time()
        with self.database.transaction() as db:
            changed = db.execute(
                "UPDATE job_chunks SET status = ?, report = ?, error = ?, updated_at = ? "
                "WHERE job_id = ? AND chunk = ? AND status = 'queued'",
                [
                    "done" if error is None else "failed",
                    None if report is None else json.dumps(report),
                    error,
                    now,
                    job_id,
                    chunk,
                ],
            ).rowcount
            if not changed:
                return False
            # The job's progress, from its chunks, in the chunk's transaction.
            db.execute(
                "UPDATE jobs SET updated_at = ?, "
                "done = (SELECT COALESCE(SUM(files), 0) FROM job_chunks "
                "        WHERE job_id = ? AND status <> 'queued'), "
                "status = CASE WHEN EXISTS (SELECT 1 FROM job_chunks "
                "        WHERE job_id = ? AND status = 'queued') THEN 'running' ELSE 'done' END "
                "WHERE id = ?",
                [now, job_id, job_id, job_id],
            )
            return True

    def chunks(self, job_id: int) -> list[ChunkRow]:
        rows = self.database.query(
            f"SELECT {_CHUNK} FROM job_chunks WHERE job_id = ? ORDER BY chunk", [job_id]
        )
        return [_chunk(r) for r in rows]

    def meta(self, key: str) -> bytes | None:
        rows = self.database.query("SELECT value FROM meta WHERE key = ?", [key])
        return bytes(rows[0][0]) if rows else None

    def put_meta_once(self, key: str, value: bytes) -> bytes:
        with self.database.transaction() as db:
            db.execute(
                "INSERT INTO meta (key, value, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO NOTHING",
                [key, value, time.time()],
            )
            return bytes(db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()[0])
