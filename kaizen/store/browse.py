"""What the run browser reads from the store: pages of runs, and everything about one run.

Reads only, and never a scan of the whole store: `runs_page` walks an index newest first and
stops after one page (a cursor, not an offset, so page 2,000 costs what page 1 does), and only
the rows on the page have their records opened for tokens and cost. `run_details` gathers one
run: its row, the served run's row when `kaizen serve` started it, the workflow's stored shape
(`kaizen.workflow.shape`), each node's checkpointed outputs, its recorded model and tool calls,
the interrupts, and (for a served run that is still going) the node statuses its events report.

Stored values are returned as the store holds them (JSON in `kaizen.store.encode`'s tagged
form), never decoded: decoding imports classes by name and pickled outputs would run code, and
a browser only shows values. Pickled outputs are reported by their size only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from kaizen.store.db import Store
from kaizen.workflow.shape import WorkflowShape

__all__ = [
    "BROWSER_STATUSES",
    "Cursor",
    "RunDetails",
    "RunRow",
    "StoredCall",
    "StoredOutputs",
    "run_details",
    "runs_page",
    "stored_outputs",
    "workflow_names",
]

# the statuses the browser filters by, and the stored statuses each one covers
BROWSER_STATUSES: dict[str, tuple[str, ...]] = {
    "running": ("running", "queued"),
    "waiting": ("waiting", "waiting_approval"),
    "completed": ("completed",),
    "failed": ("failed",),
    "cancelled": ("cancelled",),
}

Cursor = tuple[float, str]  # (start time, run id) of the last run on the previous page


@dataclass(frozen=True, slots=True)
class RunRow:
    """One line of the runs list."""

    run_id: str
    workflow: str
    status: str
    started: float
    finished: float | None
    tokens: int | None  # None: not known yet (the run has no record)
    cost: float | None
    served: bool  # started by `kaizen serve`
    checkpointed: bool
    recorded: bool

    @property
    def duration(self) -> float | None:
        return None if self.finished is None else max(0.0, self.finished - self.started)


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join("?" * len(values)) + ")"


def runs_page(
    store: Store,
    *,
    status: str | None = None,
    workflow: str | None = None,
    search: str | None = None,
    before: Cursor | None = None,
    limit: int = 50,
) -> tuple[list[RunRow], Cursor | None]:
    """One page of runs, newest first: `(rows, cursor of the next page or None)`.

    Every run the store knows: those in ``runs`` (checkpointed, recorded, and every served run
    once it began) and served runs that never began (queued, or cancelled while queued).
    `status` is one of `BROWSER_STATUSES`; `search` matches the start of run ids."""
    if status is not None and status not in BROWSER_STATUSES:
        raise ValueError(f"unknown status {status!r}; one of {', '.join(BROWSER_STATUSES)}")
    statuses = BROWSER_STATUSES[status] if status else ()
    where: list[str] = []
    args: list[Any] = []
    if statuses:
        where.append(f"status IN {_in(statuses)}")
        args += statuses
    if search:
        where.append("run_id >= ? AND run_id < ?")
        args += [search, search + "\U0010ffff"]
    cursor_args: list[Any] = list(before) if before else []
    runs_where = [*where, "(started, run_id) < (?, ?)"] if before else list(where)
    if workflow:
        runs_where.append("workflow = ?")
    rows = store.read(
        "SELECT run_id, workflow, status, started, finished, checkpoint, recorded FROM runs"
        + (" WHERE " + " AND ".join(runs_where) if runs_where else "")
        + " ORDER BY started DESC, run_id DESC LIMIT ?",
        (*args, *cursor_args, *([workflow] if workflow else []), limit + 1),
    )
    # served runs that never began (no row in ``runs``: queued, or cancelled while queued),
    # newer than the page's last run: their ``created`` bounds the walk (a served run that
    # began has its twin in ``runs``, started after it was created)
    oldest = rows[-1][3] if len(rows) > limit else None
    served_where = [*where, "NOT EXISTS (SELECT 1 FROM runs r WHERE r.run_id = s.run_id)"]
    served_args: list[Any] = list(args)
    if before:
        served_where.append("(created, run_id) < (?, ?)")
        served_args += cursor_args
    if oldest is not None:
        served_where.append("created >= ?")
        served_args.append(oldest)
    if workflow:
        served_where.append("target = ?")
        served_args.append(workflow)
    unstarted = store.read(
        "SELECT run_id, target, status, created, finished FROM served_runs s WHERE "
        + " AND ".join(served_where)
        + " ORDER BY created DESC, run_id DESC LIMIT ?",
        (*served_args, limit + 1),
    )
    served_status = dict(
        _chunked(store, "SELECT run_id, status FROM served_runs", [r[0] for r in rows])
    )
    served_status.update((r[0], r[2]) for r in unstarted)
    merged: list[tuple[Any, ...]] = [
        (run_id, name, served_status.get(run_id, state), started, finished, bool(cp), bool(rec))
        for run_id, name, state, started, finished, cp, rec in rows
    ]
    merged += [(*r, False, False) for r in unstarted]
    merged.sort(key=lambda r: (r[3], r[0]), reverse=True)
    page = merged[:limit]
    usage = {
        run_id: (prompt, completion, cost)
        for run_id, prompt, completion, cost in _chunked(
            store,
            f"SELECT run_id, {store.json_number('record', 'usage', 'prompt_tokens')},"
            f" {store.json_number('record', 'usage', 'completion_tokens')},"
            f" {store.json_number('record', 'usage', 'cost')} FROM runs",
            [r[0] for r in page],
            extra=" AND record IS NOT NULL",
        )
    }
    result = []
    for run_id, name, state, started, finished, cp, rec in page:
        prompt, completion, cost = usage.get(run_id, (None, None, None))
        tokens = None if prompt is None else int(prompt) + int(completion or 0)
        result.append(
            RunRow(
                run_id,
                name,
                state,
                started,
                finished,
                tokens,
                None if cost is None else float(cost),
                run_id in served_status,
                cp,
                rec,
            )
        )
    more = len(merged) > limit
    return result, ((page[-1][3], page[-1][0]) if more and page else None)


def _chunked(store: Store, query: str, ids: list[str], extra: str = "") -> list[tuple[Any, ...]]:
    """`query` for the rows whose run_id is one of `ids` (in chunks SQLite can bind)."""
    found: list[tuple[Any, ...]] = []
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        if chunk:
            found += store.read(f"{query} WHERE run_id IN {_in(tuple(chunk))}{extra}", tuple(chunk))
    return found


def workflow_names(store: Store) -> list[str]:
    """Every workflow or served target the store has runs of (for the filter)."""
    rows = store.read(
        "SELECT DISTINCT workflow FROM runs UNION SELECT DISTINCT target FROM "
        "served_runs ORDER BY 1"
    )
    return [r[0] for r in rows]


# -- one run ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredOutputs:
    """A node's checkpointed outputs as stored: `value` is the JSON (None when pickled)."""

    encoding: str  # 'json' or 'pickle'
    size: int  # bytes
    value: Any = None
    finished: float | None = None
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class StoredCall:
    """One recorded model or tool call of a node (`kaizen.store.calls`, ``record=True``)."""

    kind: str  # 'model' or 'tool'
    occurrence: int
    request: Any  # the canonical request (no credentials)
    response: Any


@dataclass(slots=True)
class RunDetails:
    """Everything the store knows about one run (see the module docstring)."""

    run_id: str
    workflow: str
    status: str
    started: float
    finished: float | None
    parameters: dict[str, Any] = field(default_factory=dict)  # as stored (tagged JSON)
    record: dict[str, Any] | None = None
    shape: WorkflowShape | None = None
    fingerprint: str | None = None
    checkpointed: bool = False
    recorded: bool = False
    served: bool = False
    results: Any = None  # a served run's results
    error: str | None = None  # a served run's error
    outputs: dict[str, StoredOutputs] = field(default_factory=dict)
    calls: dict[str, list[StoredCall]] = field(default_factory=dict)
    interrupts: list[dict[str, Any]] = field(default_factory=list)
    live_status: dict[str, str] = field(default_factory=dict)  # node -> status, from events
    last_event: int = 0  # the served run's last event id (the page follows on from it)


# the node statuses a served run's events report (sse kinds -> NodeStatus values)
_EVENT_STATUS = {
    "node_started": "running",
    "node_retrying": "running",
    "node_finished": "completed",
    "node_failed": "failed",
    "node_cancelled": "cancelled",
    "node_skipped": "skipped",
    "interrupt": "waiting",
    "node_resumed": "running",
}


def run_details(
    store: Store, run_id: str, *, value_limit: int | None = None, calls: bool = True
) -> RunDetails | None:
    """Run `run_id` (None: the store has no such run). Outputs larger than `value_limit`
    bytes are not parsed (their size is reported; `stored_outputs` reads one whole).
    `calls`: read its recorded model and tool calls too (the largest rows of a run)."""
    rows = store.read(
        "SELECT r.workflow, r.status, r.started, r.finished, r.parameters, r.record,"
        " r.fingerprint, r.checkpoint, r.recorded, w.shape FROM runs r"
        " LEFT JOIN workflows w ON w.fingerprint = r.fingerprint WHERE r.run_id = ?",
        (run_id,),
    )
    served = store.read(
        "SELECT target, status, parameters, created, finished, results, error, record"
        " FROM served_runs WHERE run_id = ?",
        (run_id,),
    )
    if not rows and not served:
        return None
    if rows:
        name, status, started, finished, params, record, digest, cp, rec, shape = rows[0]
        details = RunDetails(
            run_id,
            name,
            status,
            started,
            finished,
            parameters=_json(params) or {},
            record=_json(record),
            fingerprint=digest,
            shape=WorkflowShape.from_json(json.loads(shape)) if shape else None,
            checkpointed=bool(cp),
            recorded=bool(rec),
        )
    else:
        target, status, params, created, finished = served[0][:5]
        details = RunDetails(
            run_id, target, status, created, finished, parameters=_json(params) or {}
        )
    if served:
        details.served = True
        details.status = served[0][1]
        details.results = _json(served[0][5])
        details.error = served[0][6]
        if details.record is None:
            details.record = _json(served[0][7])
        if not rows:
            details.parameters = {"(request)": details.parameters}
        _follow_events(store, details)
    limit = value_limit if value_limit is not None else -1
    for node_id, encoding, size, data, done, attempts in store.read(
        "SELECT node_id, encoding, length(outputs),"
        " CASE WHEN encoding = 'json' AND (? < 0 OR length(outputs) <= ?) THEN outputs END,"
        " finished, attempts FROM checkpoints WHERE run_id = ?",
        (limit, limit, run_id),
    ):
        value = json.loads(bytes(data)) if data is not None else None
        details.outputs[node_id] = StoredOutputs(encoding, size, value, done, attempts)
    recorded = store.read(
        "SELECT node_id, kind, occurrence, request, response FROM recordings WHERE run_id = ?"
        f" ORDER BY {store.insertion_order}",
        (run_id,),
    ) if calls else []  # fmt: skip
    for node_id, kind, occurrence, request, response in recorded:
        details.calls.setdefault(node_id, []).append(
            StoredCall(kind, occurrence, _json(request), _json(response))
        )
    for row in store.read(
        "SELECT id, node_id, kind, payload, schema, tool, args, created, answered, answer,"
        " answered_by, answered_at FROM interrupts WHERE run_id = ? ORDER BY created, idx",
        (run_id,),
    ):
        keys = (
            "id",
            "node_id",
            "kind",
            "payload",
            "schema",
            "tool",
            "args",
            "created",
            "answered",
            "answer",
            "answered_by",
            "answered_at",
        )
        item = dict(zip(keys, row, strict=True))
        for key in ("payload", "schema", "args", "answer"):
            item[key] = _json(item[key])
        item["answered"] = bool(item["answered"])
        details.interrupts.append(item)
    return details


def _follow_events(store: Store, details: RunDetails) -> None:
    """Node statuses from a served run's events (what its record will say once it ends)."""
    kinds = tuple(_EVENT_STATUS)
    for kind, data in store.read(
        f"SELECT kind, data FROM served_events WHERE run_id = ? AND kind IN {_in(kinds)}"
        " ORDER BY seq",
        (details.run_id, *kinds),
    ):
        node = _json(data)
        if isinstance(node, dict) and "node_id" in node:
            details.live_status[str(node["node_id"])] = _EVENT_STATUS[kind]
    last = store.read("SELECT max(seq) FROM served_events WHERE run_id = ?", (details.run_id,))
    details.last_event = int(last[0][0] or 0)


def stored_outputs(store: Store, run_id: str, node_id: str) -> StoredOutputs | None:
    """One node's checkpointed outputs, whole (None: the store has none)."""
    rows = store.read(
        "SELECT encoding, length(outputs), CASE WHEN encoding = 'json' THEN outputs END,"
        " finished, attempts FROM checkpoints WHERE run_id = ? AND node_id = ?",
        (run_id, node_id),
    )
    if not rows:
        return None
    encoding, size, data, done, attempts = rows[0]
    value = json.loads(bytes(data)) if data is not None else None
    return StoredOutputs(encoding, size, value, done, attempts)


def _json(text: Any) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text
