"""The dataflow state of one run: small synchronous functions, no I/O (after dask's `local.py`).

A run's state is a `RunState`:

    plan       the workflow's `ExecutionPlan` (static: per node its targets, edges, inputs, ...)
    status     per node: WAITING, READY, RUNNING, DONE, FAILED, SKIPPED, CANCELLED or PAUSED
    remaining  per node: how many of its distinct sources have not settled yet
    inputs     per node: the input values delivered so far (bound values, parameters, upstream)
    lost       per node: inputs that will never arrive, as `(port, why, fatal)`
    ready      the READY nodes, in the order they became ready (the driver starts them from here)
    running    how many nodes are RUNNING

A node *settles* when it is DONE, FAILED or SKIPPED. When all of a node's sources have settled it
becomes READY, unless an input it needs will never arrive: then it is SKIPPED with the reason, and
its own dependants learn that in turn (skip propagation). An output port a DONE node left out of
its outputs was *not produced*; a required input fed from it is lost. Nodes that accept partial
inputs (`MergeNode`) run with whatever arrived, and are skipped only when nothing did (unless they
run without inputs). A FAILED node's outputs are lost *fatally* when the run continues past
failures: every dependant is skipped, optional input or not.

Transitions, each the only way its change happens:

    new_state(plan, inputs, finished)   a run begins; `finished` nodes (index -> outputs) of an
                                        earlier run are DONE already and delivered (resume)
    start(state, i)                     READY -> RUNNING
    complete(state, i, outputs, why)    RUNNING -> DONE; outputs flow downstream
    fail(state, i, reason, propagate)   RUNNING -> FAILED; with `propagate`, dependants are cut off
    refuse(state, i, label, detail)     RUNNING -> SKIPPED (a budget said no); like a skip
    pause(state, i)                     RUNNING -> PAUSED (it waits for a person): it does not
                                        settle, so its dependants keep WAITING; the run is over
                                        when nothing else can run, and resumed later
    cancel(state, started)              stop: nothing more becomes READY; the RUNNING nodes in
                                        `started` are CANCELLED, the others (queued, never begun)
                                        go back to WAITING

`complete`, `fail` and `refuse` return the nodes they caused to be skipped, as
`(index, reason)` in the order it happened, for the driver to report.
"""

from __future__ import annotations

import enum
import itertools
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kaizen.workflow.plan import ExecutionPlan, NodePlan

NodeState = enum.IntEnum(
    "NodeState", "WAITING READY RUNNING DONE FAILED SKIPPED CANCELLED PAUSED", module=__name__
)
WAITING, READY, RUNNING, DONE, FAILED, SKIPPED, CANCELLED, PAUSED = NodeState

Lost = tuple[str, str, bool]  # (input port, why it will not arrive, fatal)
Skips = list[tuple[int, str]]


@dataclass(slots=True)
class RunState:
    plan: ExecutionPlan
    status: list[NodeState]
    remaining: list[int]
    inputs: list[dict[str, Any]]
    lost: list[list[Lost] | None]
    ready: deque[int] = field(default_factory=deque)
    running: int = 0


def new_state(
    plan: ExecutionPlan,
    inputs: list[dict[str, Any]],
    finished: Mapping[int, Mapping[str, Any]] | None = None,
) -> RunState:
    """The state at the start of a run. `inputs` holds each node's starting inputs (it is kept
    and filled in, not copied); `finished` nodes are DONE already and their outputs delivered."""
    n = len(plan.nodes)
    state = RunState(plan, [WAITING] * n, [p.n_sources for p in plan.nodes], inputs, [None] * n)
    finished = finished or {}
    for i in finished:
        state.status[i] = DONE
    skips: Skips = []
    for i in plan.roots if not finished else range(n):  # topological order: sources first
        if i in finished:
            _deliver(state, plan.nodes[i], dict(finished[i]), None, False, skips)
        elif plan.nodes[i].n_sources == 0:
            _make_ready(state, i)
    _propagate(state, skips)
    return state


def start(state: RunState, i: int) -> None:
    """Node `i`, READY, is handed to an executor."""
    if state.status[i] is not READY:
        raise _wrong(state, i, "READY")
    state.status[i] = RUNNING
    state.running += 1


def complete(
    state: RunState, i: int, outputs: dict[str, Any], explanation: str | None = None
) -> Skips:
    """Node `i` finished with `outputs`; ports it left out were not produced (`explanation`:
    the node's own word on why, appended to its dependants' skip reasons)."""
    if state.status[i] is not RUNNING:
        raise _wrong(state, i, "RUNNING")
    state.status[i] = DONE
    state.running -= 1
    p = state.plan.nodes[i]
    skips: Skips = []
    why = None  # the reason for lost ports, written only when a port is lost
    if not p.fed_ports.issubset(outputs):
        why = f"{p.node_id}.{{port}} was not produced" + (f": {explanation}" if explanation else "")
    _deliver(state, p, outputs, why, False, skips)
    return _propagate(state, skips) if skips else skips


def fail(state: RunState, i: int, reason: str, *, propagate: bool) -> Skips:
    """Node `i` failed (`reason`: "Type: message"). With `propagate` (the run continues past
    failures) its dependants are skipped; otherwise the run is stopping and nothing flows."""
    _settle_running(state, i, FAILED)
    skips: Skips = []
    if propagate:
        p = state.plan.nodes[i]
        _deliver(state, p, None, f"upstream {p.node_id!r} failed ({reason})", True, skips)
    return _propagate(state, skips)


def refuse(state: RunState, i: int, label: str, detail: str) -> Skips:
    """Node `i` was refused while running (`label`: "budget exceeded"): SKIPPED with the reason
    "label: detail", and its outputs lost like a skipped node's."""
    _settle_running(state, i, SKIPPED)
    skips: Skips = [(i, f"{label}: {detail}")]
    p = state.plan.nodes[i]
    _deliver(state, p, None, f"{p.node_id!r} was skipped ({label})", False, skips)
    return _propagate(state, skips, first=1)


def pause(state: RunState, i: int) -> None:
    """Node `i` paused for a person: PAUSED, its outputs (and its dependants) wait."""
    _settle_running(state, i, PAUSED)


def cancel(state: RunState, started: Iterable[int]) -> list[int]:
    """Stop the run: clear READY; RUNNING nodes in `started` become CANCELLED (returned), the
    other RUNNING ones (handed over but never begun) WAITING again."""
    began, status = set(started), state.status
    running = [i for i, s in enumerate(status) if s is RUNNING]
    for i in (*state.ready, *running):
        status[i] = CANCELLED if i in began and status[i] is RUNNING else WAITING
    state.ready.clear()
    state.running = 0
    return [i for i in running if status[i] is CANCELLED]


def is_finished(state: RunState) -> bool:
    """Nothing READY and nothing RUNNING: the run is over."""
    return not state.ready and state.running == 0


# -- internals -----------------------------------------------------------------------------------


def _wrong(state: RunState, i: int, expected: str) -> RuntimeError:
    node = state.plan.nodes[i].node_id
    return RuntimeError(f"node {node!r} is {state.status[i].name}, not {expected}")


def _settle_running(state: RunState, i: int, status: NodeState) -> None:
    if state.status[i] is not RUNNING:
        raise _wrong(state, i, "RUNNING")
    state.status[i] = status
    state.running -= 1


def _make_ready(state: RunState, i: int) -> None:
    state.status[i] = READY
    state.ready.append(i)


def _deliver(
    state: RunState, p: NodePlan, outputs: dict[str, Any] | None, why: str | None, fatal: bool,
    skips: Skips,
) -> None:  # fmt: skip
    """Feed `p`'s outputs to its dependants; a port missing from `outputs` is lost for `why`
    (`{port}` in it names the port). Dependants whose sources have all settled are decided."""
    inputs, lost = state.inputs, state.lost
    for t, source_port, target_port in p.edges_out:
        if outputs is not None and source_port in outputs:
            inputs[t][target_port] = outputs[source_port]
        else:
            entry = (target_port, (why or "").replace("{port}", source_port), fatal)
            entries = lost[t]
            if entries is None:
                lost[t] = [entry]
            else:
                entries.append(entry)
    remaining, status = state.remaining, state.status
    for t in p.targets:
        remaining[t] -= 1
        if remaining[t] == 0 and status[t] is WAITING:
            if lost[t] is None:
                status[t] = READY
                state.ready.append(t)
            else:
                _decide(state, t, skips)


def _decide(state: RunState, t: int, skips: Skips) -> None:
    """All of `t`'s sources settled and some input will not arrive: run it anyway, or skip it."""
    p = state.plan.nodes[t]
    got, lost = state.inputs[t], state.lost[t] or []
    if p.partial:
        if p.runs_without_inputs or any(port in got for port in p.wired):
            _make_ready(state, t)
        else:
            skips.append((t, "no input arrived: " + "; ".join(w for _, w, _ in lost)))
        return
    for _port, why, fatal in lost:
        if fatal:
            skips.append((t, why))
            return
    for port, why, _ in lost:
        if port not in got and port in p.required:
            skips.append((t, f"input {port!r} is missing: {why}"))
            return
    _make_ready(state, t)  # only optional inputs are missing: their defaults apply


def _propagate(state: RunState, skips: Skips, first: int = 0) -> Skips:
    """Mark the queued skips SKIPPED, one by one, delivering each one's absence downstream
    (which may queue more, seen by this same loop); returns every skip, in order."""
    for j, _reason in itertools.islice(skips, first, None):
        state.status[j] = SKIPPED
        p = state.plan.nodes[j]
        _deliver(state, p, None, f"{p.node_id!r} was skipped", False, skips)
    return skips
