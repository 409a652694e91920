"""Served runs in the store: the runs `kaizen serve` started, their status, results and record,
and every event it streamed, so a restarted server still answers for them.

Two tables (schema version 3, `kaizen.store.db.MIGRATIONS`): ``served_runs`` (one row per run)
and ``served_events`` (one row per Server-Sent Event, numbered from 1 within its run: the SSE
``id``). `ServedRunLog` writes them through the store's `BatchWriter` (group commit on the
writer's own thread), so a request or a run never waits for SQLite; `flush()` waits for what was
written so far. The readers (`load_served_run`, `load_served_events`) read committed rows.

A run's row is written before its events (the writer keeps the order), its status on each
change and its results, error and record when it ends.

Leases. The worker that executes a run holds a lease on it (``owner``, ``lease_until``),
renewed for all its runs at once (`renew_leases`) while they are ``queued`` or ``running``; a
run that waits for a person holds none. A worker that dies stops renewing; once a lease has
expired, any worker on the store takes the run over (`claim_expired`: one UPDATE that only
matches expired leases, so of several workers scanning at once exactly one wins each run) and
resumes it from its checkpoints. A worker that learns it lost a lease (`renew_leases` no longer
returns the run) stops executing it, and its late writes of the run's end change nothing
(`ServedRunLog.finished` only touches a row its writer owns). `abandon_unfinished` is the older
answer for a single server: it marks every unfinished run failed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kaizen.store.db import Store
from kaizen.store.writer import BatchWriter, attach, detach

__all__ = [
    "FINISHED_STATUSES",
    "ClaimedRun",
    "ServedEvent",
    "ServedRunLog",
    "ServedRunRow",
    "abandon_unfinished",
    "cancel_requests",
    "claim_expired",
    "load_served_events",
    "load_served_run",
    "renew_leases",
    "reopen",
    "request_cancel",
]

log = logging.getLogger("kaizen.serve")

FINISHED_STATUSES = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True, slots=True)
class ServedRunRow:
    """A served run as the store holds it (JSON columns decoded)."""

    run_id: str
    target: str
    status: str
    parameters: dict[str, Any]
    created: float
    finished: float | None
    results: Any
    error: str | None
    record: dict[str, Any] | None

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES


@dataclass(frozen=True, slots=True)
class ServedEvent:
    """One streamed event: `seq` is its SSE id, `data` its JSON text."""

    seq: int
    kind: str
    data: str


_INSERT_RUN = (
    "INSERT INTO served_runs (run_id, target, status, parameters, created, owner, lease_until)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO UPDATE SET target = excluded.target,"
    " status = excluded.status, parameters = excluded.parameters, created = excluded.created,"
    " owner = excluded.owner, lease_until = excluded.lease_until, finished = NULL,"
    " results = NULL, error = NULL, record = NULL, cancel = 0"
)
_SET_STATUS = "UPDATE served_runs SET status = ? WHERE run_id = ?"
_INSERT_EVENT = "INSERT INTO served_events VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"
_FINISH = (
    "UPDATE served_runs SET status = ?, finished = ?, results = ?, error = ?, record = ?,"
    " lease_until = NULL WHERE run_id = ? AND (CAST(? AS TEXT) IS NULL OR owner IS NULL"
    " OR owner = ?)"
)
_TAKE = "UPDATE served_runs SET owner = ?, lease_until = ? WHERE run_id = ?"


class ServedRunLog:
    """Writes served runs and their events through the store's batch writer (see the module
    docstring). Thread-safe; `close()` flushes and lets the writer go."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.failures = 0  # writes the store refused (each logged)
        self._writer: BatchWriter | None = attach(store)
        self._lock = threading.Lock()

    def write_failed(self, error: Exception) -> None:
        """A write could not land (told by the writer, on its thread)."""
        with self._lock:
            self.failures += 1
        log.error("kaizen serve: a served run's row could not be stored: %s", error)

    def _submit(self, sql: str, parameters: tuple[Any, ...]) -> None:
        writer = self._writer
        if writer is None:
            raise RuntimeError("this ServedRunLog is closed")
        writer.submit(sql, parameters, self)

    def created(
        self,
        run_id: str,
        target: str,
        status: str,
        parameters_json: str,
        created: float | None = None,
        owner: str | None = None,
        lease_until: float | None = None,
    ) -> None:
        when = time.time() if created is None else created
        self._submit(
            _INSERT_RUN, (run_id, target, status, parameters_json, when, owner, lease_until)
        )

    def leased(self, run_id: str, owner: str, until: float) -> None:
        """`owner` executes `run_id` from now (a resumed run): its lease, until `until`."""
        self._submit(_TAKE, (owner, until, run_id))

    def status(self, run_id: str, status: str) -> None:
        self._submit(_SET_STATUS, (status, run_id))

    def event(self, run_id: str, seq: int, kind: str, data_json: str) -> None:
        self._submit(_INSERT_EVENT, (run_id, seq, kind, data_json))

    def finished(
        self,
        run_id: str,
        status: str,
        *,
        results: str | None,
        error: str | None,
        record: str | None,
        finished: float | None = None,
        owner: str | None = None,
    ) -> None:
        """The run ended (at `finished`, default now): `results` and `record` as JSON text.
        With `owner`, only while that worker holds the run (a run taken over is the new
        owner's to finish)."""
        when = time.time() if finished is None else finished
        self._submit(_FINISH, (status, when, results, error, record, run_id, owner, owner))

    async def aflush(self) -> None:
        """Wait, without holding a thread, until every row written so far is committed."""
        if self._writer is not None:
            await self._writer.aflush()

    def flush(self) -> None:
        """Wait until everything written before this call is committed (or has failed)."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.flush()
            detach(writer)


def load_served_run(store: Store, run_id: str) -> ServedRunRow | None:
    """The served run `run_id`, or None when the store has none."""
    rows = store.read(
        "SELECT run_id, target, status, parameters, created, finished, results, error, record"
        " FROM served_runs WHERE run_id = ?",
        (run_id,),
    )
    if not rows:
        return None
    row = rows[0]
    return ServedRunRow(
        run_id=row[0],
        target=row[1],
        status=row[2],
        parameters=json.loads(row[3]),
        created=row[4],
        finished=row[5],
        results=json.loads(row[6]) if row[6] is not None else None,
        error=row[7],
        record=json.loads(row[8]) if row[8] is not None else None,
    )


def load_served_events(store: Store, run_id: str, after: int = 0) -> list[ServedEvent]:
    """The events of `run_id` whose id is above `after`, in order."""
    rows = store.read(
        "SELECT seq, kind, data FROM served_events WHERE run_id = ? AND seq > ? ORDER BY seq",
        (run_id, after),
    )
    return [ServedEvent(seq, kind, data) for seq, kind, data in rows]


def abandon_unfinished(store: Store, reason: str) -> int:
    """Mark the runs a stopped server left queued or running as failed with `reason`; returns
    how many there were."""
    return store.changed(
        "UPDATE served_runs SET status = 'failed', finished = ?, error = ?"
        " WHERE status IN ('queued', 'running')",
        (time.time(), reason),
    )


@dataclass(frozen=True, slots=True)
class ClaimedRun:
    """A run whose lease expired, now this worker's: what it needs to resume it."""

    run_id: str
    parameters: dict[str, Any]
    created: float
    cancel: bool  # a cancel was asked before it was taken over


def renew_leases(store: Store, owner: str, until: float) -> set[str]:
    """Extend `owner`'s leases on its unfinished runs to `until`; the ids it still holds."""
    with store.write() as db:
        rows = db.execute(
            "UPDATE served_runs SET lease_until = ? WHERE owner = ?"
            " AND status IN ('queued', 'running') RETURNING run_id",
            (until, owner),
        ).fetchall()
    return {row[0] for row in rows}


def claim_expired(store: Store, owner: str, until: float, now: float) -> list[ClaimedRun]:
    """Take over the unfinished runs whose lease expired before `now` (or that have none):
    `owner` holds them until `until`. Atomic: a run is claimed by exactly one worker."""
    with store.write() as db:
        rows = db.execute(
            "UPDATE served_runs SET owner = ?, lease_until = ? WHERE status IN ('queued',"
            " 'running') AND (lease_until IS NULL OR lease_until < ?)"
            " RETURNING run_id, parameters, created, cancel",
            (owner, until, now),
        ).fetchall()
    return [ClaimedRun(r[0], json.loads(r[1]), r[2], bool(r[3])) for r in rows]


def request_cancel(store: Store, run_id: str) -> bool:
    """Ask whichever process runs `run_id` to cancel it; False when it is not unfinished."""
    sql = "UPDATE served_runs SET cancel = 1 WHERE run_id = ? AND status IN ('queued', 'running')"
    return bool(store.changed(sql, (run_id,)))


def reopen(store: Store, run_id: str, owner: str, until: float) -> bool:
    """Take finished-but-not-completed run `run_id` (failed or cancelled) back to ``queued``
    under `owner`'s lease, to resume it from its checkpoints; compare-and-set, so of two
    requests to resume it exactly one gets True."""
    sql = (
        "UPDATE served_runs SET status = 'queued', finished = NULL, error = NULL, cancel = 0,"
        " owner = ?, lease_until = ? WHERE run_id = ? AND status IN ('failed', 'cancelled')"
    )
    return bool(store.changed(sql, (owner, until, run_id)))


def cancel_requests(store: Store, run_ids: Iterable[str]) -> list[str]:
    """Those of `run_ids` that another process asked to cancel."""
    ids = list(run_ids)
    if not ids:
        return []
    marks = ", ".join("?" * len(ids))
    rows = store.read(
        f"SELECT run_id FROM served_runs WHERE cancel = 1 AND run_id IN ({marks})", tuple(ids)
    )
    return [row[0] for row in rows]
