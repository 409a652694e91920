"""Runs and node checkpoints in the store: the workflow fingerprint, the rows a run writes, and
what `resume`, `replay` and `kaizen runs` read (`RunInfo`, `load_run`, `list_runs`, `prune`).

A run is written when it begins (its workflow fingerprint and parameters), each node's outputs
when the node completes, and its record when it ends. The `Checkpointer` (a lifecycle hook, in
`kaizen.durable`: hooks are the runtime's, a layer above the store)
encodes a node's outputs on the driver thread, the moment the node completes (so later changes
to those objects cannot leak in), and hands the row to the store's `BatchWriter`
(`kaizen.store.writer`), which commits rows in batches on its own thread; the run's end waits
until all of its rows are committed. A checkpoint is written once: the first outputs recorded
for (run, node) stay (``ON CONFLICT DO NOTHING``), so a node that ran again after a crash never
replaces what the resumed run already used: at-least-once execution, exactly-once recording.
A process killed within the writer's durability window (a few milliseconds) loses the rows not
yet committed, whole: those nodes simply run again on resume.

The fingerprint (`fingerprint`) is a hash of what makes a workflow that workflow: node ids,
types, configs (functions by name and bytecode; agents by name, signature and config,
never the API key) and connections. It is the same in every process that builds the same
workflow, and `resume` refuses a workflow whose fingerprint differs, naming what changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kaizen.errors import EncodeError, RunNotFoundError, WorkflowChangedError
from kaizen.store.db import Store
from kaizen.store.encode import canonical_json, decode, decode_outputs, encode
from kaizen.workflow.shape import shape_of

if TYPE_CHECKING:
    from kaizen.moments import RunStatus
    from kaizen.runtime.record import RunRecord
    from kaizen.workflow.workflow import Workflow

__all__ = [
    "FINISH_RUN",
    "INSERT_CHECKPOINT",
    "RunInfo",
    "begin_run",
    "check_fingerprint",
    "fingerprint",
    "list_runs",
    "load_checkpoints",
    "load_run",
    "parse_age",
    "prune",
    "record_json",
    "stored_status",
]

_SECRET_KEYS = frozenset({"api_key", "headers", "extra_headers", "aws_secret_access_key"})


# -- the fingerprint -----------------------------------------------------------------------------


# a built Workflow is immutable: its fingerprint is worked out once per object
_fingerprints: weakref.WeakKeyDictionary[Workflow, tuple[str, dict[str, str]]] = (
    weakref.WeakKeyDictionary()
)


def fingerprint(workflow: Workflow) -> tuple[str, dict[str, str]]:
    """`(digest of the whole workflow, {node_id: digest of that node})`."""
    known = _fingerprints.get(workflow)
    if known is not None:
        return known[0], dict(known[1])
    nodes = {node_id: _digest(_node_shape(node)) for node_id, node in workflow.nodes.items()}
    connections = sorted(str(c) for c in workflow.connections)
    whole = _digest({"nodes": nodes, "connections": connections})
    result = whole, {**nodes, "(connections)": _digest(connections)}
    _fingerprints[workflow] = result
    return result[0], dict(result[1])


def check_fingerprint(run: RunInfo, workflow: Workflow) -> None:
    """`WorkflowChangedError` unless `workflow` is the workflow `run` ran."""
    digest, nodes = fingerprint(workflow)
    if digest == run.fingerprint:
        return
    before = run.node_fingerprints
    differences = [f"node {n!r} was removed" for n in before if n not in nodes]
    differences += [f"node {n!r} was added" for n in nodes if n not in before]
    differences += [
        "the connections changed" if n == "(connections)" else f"node {n!r} changed"
        for n in nodes
        if n in before and before[n] != nodes[n]
    ]
    raise WorkflowChangedError(
        f"run {run.run_id!r} ran another version of workflow {run.workflow!r}: "
        + "; ".join(differences or ["its fingerprint differs"])
        + ". Resume it with the workflow it ran, or start a new run.",
        differences=differences,
    )


def _digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:32]


def _node_shape(node: Any) -> dict[str, Any]:
    shape: dict[str, Any] = {"type": type(node).__name__, "config": _stable(dict(node.config))}
    agent = getattr(node, "agent", None)
    if agent is not None:
        shape["agent"] = _stable(agent)
    return shape


def _stable(value: Any) -> Any:
    """A JSON value standing for `value` that is the same in every process."""
    if isinstance(value, str | int | float | bool | type(None)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _stable(v) for k, v in value.items() if str(k) not in _SECRET_KEYS}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_stable(v) for v in value]
        return sorted(items, key=canonical_json) if isinstance(value, set | frozenset) else items
    code = getattr(value, "__code__", None)
    if code is not None:  # a function: its name and what it does (its module's name depends
        # on how the file was loaded: `kaizen run file.py:attr` or an import)
        name = getattr(value, "__qualname__", "?")
        return {"function": name, "code": hashlib.sha256(code.co_code).hexdigest()[:16]}
    if hasattr(value, "signature") and hasattr(value, "config") and hasattr(value, "name"):
        config = value.config.explicit() if hasattr(value.config, "explicit") else {}
        model = config.get("model")
        if model is not None and not isinstance(model, str):
            config["model"] = getattr(model, "model_name", type(model).__name__)
        return {"agent": value.name, "signature": str(value.signature), "config": _stable(config)}
    if hasattr(value, "model_dump"):
        return _stable(value.model_dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _stable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, type):
        return f"{value.__module__}:{value.__qualname__}"
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


# -- runs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    """A run as the store knows it."""

    run_id: str
    workflow: str
    fingerprint: str
    node_fingerprints: dict[str, str]
    parameters: dict[str, Any]
    status: str
    started: float
    finished: float | None
    checkpoint: bool
    recorded: bool
    record: dict[str, Any] | None
    completed_nodes: int = 0


def begin_run(
    store: Store,
    run_id: str,
    workflow: Workflow,
    parameters: Mapping[str, Any] | None,
    *,
    checkpoint: bool,
    recorded: bool,
) -> None:
    """Write the run's row (kept as it is when the run is being resumed)."""
    digest, nodes = fingerprint(workflow)
    try:
        params = {
            node: (
                {p: encode(v, node_id=node, port=p) for p, v in value.items()}
                if isinstance(value, Mapping)
                else encode(value, node_id=None, port=node)
            )
            for node, value in (parameters or {}).items()
        }
    except EncodeError as exc:
        raise EncodeError(
            f"run parameters cannot be stored: {exc}", node_id=exc.node_id, port=exc.port,
            type_name=exc.type_name,
        ) from exc  # fmt: skip
    new_shape = _shape_unknown(store, digest)
    with store.write() as db:
        if new_shape:
            db.execute(
                "INSERT INTO workflows VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (digest, workflow.name, json.dumps(shape_of(workflow).to_json())),
            )
        db.execute(
            "INSERT INTO runs (run_id, workflow, fingerprint, nodes, parameters, status, started,"
            " checkpoint, recorded) VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?)"
            " ON CONFLICT (run_id) DO UPDATE SET status = 'running', finished = NULL,"
            " checkpoint = CASE WHEN excluded.checkpoint > runs.checkpoint"
            " THEN excluded.checkpoint ELSE runs.checkpoint END,"
            " recorded = CASE WHEN excluded.recorded > runs.recorded"
            " THEN excluded.recorded ELSE runs.recorded END",
            (
                run_id, workflow.name, digest, json.dumps(nodes), json.dumps(params),
                time.time(), int(checkpoint), int(recorded),
            ),
        )  # fmt: skip
    if new_shape:
        _shapes_stored.setdefault(store, set()).add(digest)


# (store, fingerprint) pairs whose shape is stored: a workflow's shape is written once per store
_shapes_stored: weakref.WeakKeyDictionary[Store, set[str]] = weakref.WeakKeyDictionary()


def _shape_unknown(store: Store, digest: str) -> bool:
    """Whether this process has not yet stored the shape of workflow `digest` in `store`
    (``ON CONFLICT DO NOTHING`` keeps it right when another process has)."""
    return digest not in _shapes_stored.get(store, ())


FINISH_RUN = "UPDATE runs SET status = ?, finished = ?, record = ? WHERE run_id = ?"


def finish_run(store: Store, run_id: str, status: str, record: RunRecord) -> None:
    with store.write() as db:
        db.execute(FINISH_RUN, (status, time.time(), record_json(record), run_id))


def record_json(record: RunRecord) -> str:
    """The record as JSON text (what `RunRecord.to_dict` gives, values JSON cannot hold as
    their `str`). Big records go through pydantic's serializer, about 20x faster than
    `dataclasses.asdict` but costing some 50 ms to build once per process."""
    if len(record.nodes) < _BIG_RECORD:
        return json.dumps(record.to_dict(), default=str)
    return _record_adapter(record).dump_json(record, fallback=str).decode()


_BIG_RECORD = 200  # nodes
_adapter_lock = threading.Lock()
_adapter: Any = None


def _record_adapter(record: RunRecord) -> Any:
    global _adapter
    with _adapter_lock:
        if _adapter is None:
            from pydantic import TypeAdapter

            _adapter = TypeAdapter(type(record))
        return _adapter


def load_run(store: Store, run_id: str) -> RunInfo:
    """The run `run_id`; `RunNotFoundError` when the store has no such run."""
    rows = store.read(_RUN_QUERY + " WHERE r.run_id = ?", (run_id,))
    if not rows:
        raise RunNotFoundError(
            f"no run {run_id!r} in store {store.path} (was it run with checkpoint=True or "
            "record=True on this store, or pruned?); `kaizen runs list` shows what is there",
            path=store.path,
        )
    return _info(rows[0])


def list_runs(store: Store, limit: int = 50) -> list[RunInfo]:
    """The most recent runs first."""
    rows = store.read(_RUN_QUERY + " ORDER BY r.started DESC LIMIT ?", (limit,))
    return [_info(row) for row in rows]


_RUN_QUERY = (
    "SELECT r.run_id, r.workflow, r.fingerprint, r.nodes, r.parameters, r.status, r.started,"
    " r.finished, r.checkpoint, r.recorded, r.record,"
    " (SELECT count(*) FROM checkpoints c WHERE c.run_id = r.run_id) FROM runs r"
)


def _info(row: tuple[Any, ...]) -> RunInfo:
    params = {
        node: (
            {p: decode(v) for p, v in value.items()} if isinstance(value, dict) else decode(value)
        )
        for node, value in json.loads(row[4]).items()
    }
    return RunInfo(
        run_id=row[0],
        workflow=row[1],
        fingerprint=row[2],
        node_fingerprints=json.loads(row[3]),
        parameters=params,
        status=row[5],
        started=row[6],
        finished=row[7],
        checkpoint=bool(row[8]),
        recorded=bool(row[9]),
        record=json.loads(row[10]) if row[10] else None,
        completed_nodes=row[11],
    )


def parse_age(text: str) -> float:
    """Seconds in an age like ``7d``, ``12h``, ``30m``, ``45s`` or ``2w``."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = text.strip().lower()
    if not text or text[-1] not in units:
        raise ValueError(f"an age is a number and a unit (s, m, h, d, w), like '7d'; got {text!r}")
    try:
        return float(text[:-1]) * units[text[-1]]
    except ValueError:
        raise ValueError(f"an age is a number and a unit, like '7d'; got {text!r}") from None


def prune(store: Store, older_than: float) -> int:
    """Delete runs that started more than `older_than` seconds ago (with their checkpoints,
    recordings and interrupts), the finished runs of `kaizen serve` created before then (with
    their events), and expired cache entries; returns how many runs went."""
    cutoff = time.time() - older_than
    finished = "('completed', 'failed', 'cancelled')"
    with store.write() as db:
        gone = {row[0] for row in db.execute("SELECT run_id FROM runs WHERE started < ?",
                                             (cutoff,))}  # fmt: skip
        gone |= {row[0] for row in db.execute(
            f"SELECT run_id FROM served_runs WHERE created < ? AND status IN {finished}",
            (cutoff,))}  # fmt: skip
        db.execute("DELETE FROM runs WHERE started < ?", (cutoff,))
        db.execute(f"DELETE FROM served_runs WHERE created < ? AND status IN {finished}", (cutoff,))
        db.execute("DELETE FROM cache WHERE expires IS NOT NULL AND expires < ?", (time.time(),))
    return len(gone)


# -- checkpoints ---------------------------------------------------------------------------------


def load_checkpoints(store: Store, run_id: str) -> dict[str, dict[str, Any]]:
    """`{node_id: outputs}` of the nodes of `run_id` that completed."""
    rows = store.read(
        "SELECT node_id, encoding, outputs FROM checkpoints WHERE run_id = ?", (run_id,)
    )
    return {node_id: decode_outputs(encoding, bytes(data)) for node_id, encoding, data in rows}


INSERT_CHECKPOINT = "INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"


def stored_status(status: RunStatus, record: RunRecord) -> str:
    """The run's status, or ``waiting_approval`` when it waits for an access policy's approval
    (kaizen.observe.policy), as the ADR names it: `resume` finishes it once approved."""
    if str(status) == "waiting" and any(
        isinstance(i.payload, dict) and "access_policy" in i.payload
        for i in record.interrupts
        if not i.answered
    ):
        return "waiting_approval"
    if any((node.error or "").startswith("ApprovalRequired") for node in record.nodes.values()):
        return "waiting_approval"
    return str(status)
