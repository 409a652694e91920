"""What `LocalRuntime` precomputes and reuses: the per-workflow `ExecutionPlan`, parameter
binding, and the `WorkerPool` that runs sync nodes.

A `Workflow` is immutable, so its plan (indices, edges, predecessor counts, unconnected ports) is
computed once, on its first run, and cached; each run then only copies a few lists.
"""

from __future__ import annotations

import enum
import threading
import types
import typing
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kaizen.errors import ParameterError
from kaizen.nodes.base import Node, Port
from kaizen.workflow import Workflow


@dataclass(frozen=True, slots=True)
class NodePlan:
    """One node as the scheduler sees it (indices instead of ids, edges grouped)."""

    index: int
    node_id: str
    node: Node
    node_type: str
    is_async: bool
    needs_policy: bool  # a timeout or retries: runs under a supervising task
    partial: bool  # accepts_partial_inputs
    n_sources: int  # distinct upstream nodes
    edges_in: tuple[tuple[int, str, str], ...]  # (source index, source port, input port)
    edges_out: tuple[tuple[int, str, str], ...]  # (target index, output port, target port)
    targets: tuple[int, ...]  # distinct downstream nodes
    wired: frozenset[str]  # input ports fed by a connection
    open_ports: Mapping[str, Port]  # input ports fed by no connection
    outputs: frozenset[str]


@dataclass(frozen=True, slots=True)
class ExecutionPlan:
    nodes: tuple[NodePlan, ...]
    index: Mapping[str, int]
    roots: tuple[int, ...]  # nodes with no upstream
    bound: tuple[Mapping[str, Any], ...]  # per node: inputs bound at build time


_plans: weakref.WeakKeyDictionary[Workflow, ExecutionPlan] = weakref.WeakKeyDictionary()
_plans_lock = threading.Lock()


def plan_for(workflow: Workflow) -> ExecutionPlan:
    """The workflow's plan, computed on first use and cached while the workflow lives."""
    try:
        return _plans[workflow]
    except KeyError:
        pass
    except TypeError:  # not weak-referenceable: plan every run (correct, a little slower)
        return _make_plan(workflow)
    plan = _make_plan(workflow)
    with _plans_lock:
        return _plans.setdefault(workflow, plan)


def _make_plan(workflow: Workflow) -> ExecutionPlan:
    order = list(workflow.order) or list(workflow.nodes)
    index = {node_id: i for i, node_id in enumerate(order)}
    edges_in: list[list[tuple[int, str, str]]] = [[] for _ in order]
    edges_out: list[list[tuple[int, str, str]]] = [[] for _ in order]
    for c in workflow.connections:
        s, t = index[c.source], index[c.target]
        edges_in[t].append((s, c.source_port, c.target_port))
        edges_out[s].append((t, c.source_port, c.target_port))
    nodes = []
    for i, node_id in enumerate(order):
        node = workflow.nodes[node_id]
        wired = frozenset(port for _, _, port in edges_in[i])
        policy = node.policy
        nodes.append(
            NodePlan(
                index=i,
                node_id=node_id,
                node=node,
                node_type=node.node_type(),
                is_async=node.is_async,
                needs_policy=policy.timeout is not None or policy.retries > 0,
                partial=bool(node.accepts_partial_inputs),
                n_sources=len({s for s, _, _ in edges_in[i]}),
                edges_in=tuple(edges_in[i]),
                edges_out=tuple(edges_out[i]),
                targets=tuple(dict.fromkeys(t for t, _, _ in edges_out[i])),
                wired=wired,
                open_ports={n: p for n, p in node.inputs.items() if n not in wired},
                outputs=frozenset(node.outputs),
            )
        )
    bound = tuple(dict(workflow.bound_inputs.get(node_id, {})) for node_id in order)
    return ExecutionPlan(
        nodes=tuple(nodes),
        index=index,
        roots=tuple(p.index for p in nodes if p.n_sources == 0),
        bound=bound,
    )


# ---------------------------------------------------------------------------------------------
# parameters


def bind_parameters(
    plan: ExecutionPlan, parameters: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """Per node, the inputs that come from build-time bindings and run parameters.

    `{node_id: {port: value}}` sets that node's port; `{port: value}` sets every unconnected input
    port of that name. Raises one `ParameterError` listing every problem: unknown ports, unused
    parameters, values of the wrong type, required inputs left without a value.
    """
    inputs, problems = check_parameters(plan, parameters)
    if problems:
        raise ParameterError("; ".join(problems) if len(problems) == 1 else _lines(problems))
    return inputs


def check_parameters(
    plan: ExecutionPlan, parameters: Mapping[str, Any] | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """`bind_parameters` without raising: `(inputs per node, every problem found)`."""
    inputs = [dict(b) for b in plan.bound]
    problems: list[str] = []
    node_scoped: list[tuple[int, str, Any]] = []
    for key, value in (parameters or {}).items():
        i = plan.index.get(key)
        if i is not None and isinstance(value, Mapping):
            for port, port_value in value.items():
                node_scoped.append((i, port, port_value))
            continue
        users = [p.index for p in plan.nodes if key in p.open_ports]
        if not users:
            problems.append(_unused(plan, key))
        for i in users:
            _set(plan, inputs, i, key, value, problems)
    for i, port, value in node_scoped:  # node-scoped values win over top-level ones
        p = plan.nodes[i]
        if port in p.open_ports:
            _set(plan, inputs, i, port, value, problems)
        elif port in p.wired:
            problems.append(
                f"parameter {p.node_id}.{port} sets an input that a connection already feeds; "
                "parameters only fill unconnected inputs"
            )
        else:
            known = ", ".join(sorted(p.open_ports)) or "none"
            problems.append(
                f"parameter {p.node_id}.{port}: node {p.node_id!r} ({p.node_type}) has no input "
                f"port {port!r} (unconnected inputs: {known})"
            )
    missing = [
        f"{p.node_id}.{name}"
        for p in plan.nodes
        for name, port in p.open_ports.items()
        if port.required and name not in inputs[p.index]
    ]
    if missing:
        problems.append(
            "missing required input(s) with no connection and no value: "
            + ", ".join(missing)
            + ' (pass parameters={"node": {"port": value}} or {"port": value})'
        )
    return inputs, problems


def _set(
    plan: ExecutionPlan,
    inputs: list[dict[str, Any]],
    i: int,
    port: str,
    value: Any,
    problems: list[str],
) -> None:
    p = plan.nodes[i]
    expected = p.open_ports[port].type
    if not value_fits(value, expected):
        problems.append(
            f"parameter {p.node_id}.{port} expects {_type_name(expected)}, "
            f"got {type(value).__name__} {value!r:.60}"
        )
    inputs[i][port] = value


def _unused(plan: ExecutionPlan, key: str) -> str:
    open_names = sorted({n for p in plan.nodes for n in p.open_ports})
    hint = f"unconnected inputs: {', '.join(open_names)}" if open_names else "no unconnected inputs"
    if key in plan.index:
        return (
            f"parameter {key!r} names node {key!r} but is not a dict of its ports; "
            f'pass {{"{key}": {{"port": value}}}}'
        )
    return (
        f"parameter {key!r} is used by no node: no node id or unconnected input port "
        f"{key!r} ({hint})"
    )


def _lines(problems: list[str]) -> str:
    return f"{len(problems)} parameter problems:\n" + "\n".join(f"  - {p}" for p in problems)


def value_fits(value: Any, annotation: Any) -> bool:
    """A cheap, conservative type check: False only when `value` plainly is not `annotation`.

    Values that validation would coerce are let through: dicts for pydantic models, member
    values for enums, ints for floats, tuples for lists.
    """
    if annotation is Any or annotation is None or isinstance(annotation, str | typing.TypeVar):
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return any(value_fits(value, arg) for arg in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if origin is not None:
        annotation = origin
    if not isinstance(annotation, type) or hasattr(annotation, "model_validate"):
        return True
    if annotation in (list, tuple):
        return isinstance(value, list | tuple)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return True
    if issubclass(annotation, enum.Enum) and not isinstance(value, annotation):
        return any(value == member.value for member in annotation)
    try:
        return isinstance(value, annotation)
    except TypeError:  # TypedDicts, non-runtime protocols: cannot be checked cheaply
        return True


def _type_name(annotation: Any) -> str:
    return annotation.__name__ if isinstance(annotation, type) else str(annotation)


# ---------------------------------------------------------------------------------------------
# the worker pool


class WorkerPool:
    """Daemon threads that run submitted calls; at most `max_workers`, started on demand.

    Leaner than `ThreadPoolExecutor`: no `Future` per call (the call reports its own outcome), and
    workers wake each other in a chain: a submit wakes one worker, and a worker that takes a call
    while more are queued wakes one more. Trivial calls are then drained by one thread without a
    thread switch per call, while blocking calls still spread over the threads within a few
    wake-ups. Daemon threads, so a sync node abandoned after a timeout never blocks exit.
    """

    def __init__(self, max_workers: int) -> None:
        self.max_workers = max_workers
        self._calls: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._idle = 0  # workers waiting and not yet woken
        self._waking = False  # an idle worker was woken and has not taken a call yet
        self._starting = 0  # threads started that have not taken a call yet
        self._threads = 0
        self._closed = False

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        with self._cond:
            self._calls.append((fn, args))
            self._bring_helper()

    def shutdown(self) -> None:
        """Let every worker exit once the calls already queued are done."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _bring_helper(self) -> None:
        """Wake an idle worker unless one is already waking, else start threads while calls
        outnumber the threads being started (lock held)."""
        if self._idle:
            if not self._waking:
                self._idle -= 1
                self._waking = True
                self._cond.notify()
            return
        # A node running a nested workflow holds its worker while it waits for the nested
        # nodes: give those a thread beyond the limit instead of deadlocking.
        nested = getattr(_worker_state, "busy", False)
        if self._starting < len(self._calls) and (self._threads < self.max_workers or nested):
            self._threads += 1
            self._starting += 1
            threading.Thread(
                target=self._work, name=f"kaizen-worker-{self._threads}", daemon=True
            ).start()

    def _work(self) -> None:
        cond, calls = self._cond, self._calls
        cond.acquire()
        self._starting -= 1
        try:
            while True:
                while not calls:
                    if self._closed:
                        self._threads -= 1
                        return
                    self._idle += 1
                    cond.wait()
                    self._waking = False
                fn, args = calls.popleft()
                if calls:
                    self._bring_helper()
                cond.release()
                _worker_state.busy = True
                try:
                    fn(*args)  # reports its own outcome and never raises
                finally:
                    _worker_state.busy = False
                    del fn, args
                    cond.acquire()
        finally:
            cond.release()


_worker_state = threading.local()
