"""What makes a `LocalRuntime` durable: checkpoints, recordings, the model-call cache, `resume`
and `replay` (`kaizen.replay`).

The runtime does not import the store (layers point down: docs/architecture.md). This module
sits above both: `LocalRuntime(checkpoint=..., record=..., cache=...)` asks the seam
`kaizen.seams.durability` for a `Durability` made from those options, and calls it when a run
begins (`begin`: the run's row, the `Checkpointer` hook, the run's calls in
`kaizen.store.calls.active_calls`), when a run is resumed (`resumed`) and when one is replayed
(`replaying`). What is stored and how is `kaizen.store` (`runs.py`, `calls.py`; docs/state.md).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from kaizen.errors import RunNotFoundError
from kaizen.interrupts import Interrupt
from kaizen.moments import NodeFinished, NodeStatus, NodeWaiting, RunFinished
from kaizen.runtime.hooks import NodeFinishHook, NodeWaitHook, RunFinishHook
from kaizen.store.calls import CachePolicy, RunCalls, active_calls, cache_policy
from kaizen.store.db import Store, StorePath, run_store
from kaizen.store.encode import encode_outputs
from kaizen.store.interrupts import (
    WAITING_STATUSES,
    answer,
    load_interrupts,
    load_resumes,
    save_pause,
)
from kaizen.store.runs import (
    FINISH_RUN,
    INSERT_CHECKPOINT,
    begin_run,
    check_fingerprint,
    load_checkpoints,
    load_run,
    record_json,
    stored_status,
)
from kaizen.store.writer import BatchWriter, attach, detach

if TYPE_CHECKING:
    from kaizen.runtime.driver import Run
    from kaizen.workflow.workflow import Workflow

__all__ = [
    "DURABILITY_MODES",
    "Checkpointer",
    "Durability",
    "DurabilityMode",
    "Resumed",
    "replay",
]

DurableOption = bool | StorePath | Store
DurabilityMode = Literal["sync", "async"]
DURABILITY_MODES: tuple[DurabilityMode, ...] = ("sync", "async")


class Durability:
    """A runtime's checkpoints, recordings and cache (see the module docstring)."""

    def __init__(
        self,
        *,
        checkpoint: DurableOption = False,
        record: DurableOption = False,
        cache: Any = False,
        allow_pickle: bool = False,
        durability: DurabilityMode = "sync",
    ) -> None:
        if durability not in DURABILITY_MODES:
            raise ValueError(f"durability must be 'sync' or 'async', got {durability!r}")
        self.mode: DurabilityMode = durability
        self.checkpointing = checkpoint is not False
        self.recording = record is not False
        self.cache: CachePolicy | None = cache_policy(cache)
        self.allow_pickle = allow_pickle
        self._store: Store | None = None
        paths = [p for p in (checkpoint, record) if p is not False and p is not True]
        if len({str(p.path if isinstance(p, Store) else p) for p in paths}) > 1:
            raise ValueError("checkpoint and record must use the same store (give one path)")
        if self.checkpointing or self.recording:
            self._store = Store.open(paths[0] if paths else None)

    @property
    def store(self) -> Store:
        """The store runs are checkpointed and recorded into (opened on first use)."""
        if self._store is None:
            self._store = Store.open()
        return self._store

    def begin(
        self,
        workflow: Workflow,
        parameters: Mapping[str, Any] | None,
        run_id: str,
        finished: Mapping[int, Mapping[str, Any]] | None,
        make_run: Callable[[list[object]], Run],
        asked: Iterable[Interrupt] = (),
    ) -> tuple[Run, AbstractContextManager[None]]:
        """The run, made by `make_run(extra_hooks)` while the run's calls are active (the run
        copies the context its nodes see), and what to hold around its drive."""
        checkpointer: Checkpointer | None = None
        calls: RunCalls | None = None
        extra: list[object] = []
        if self.checkpointing or self.recording or finished is not None:
            # the run's row first: parameters that cannot be stored fail before anything runs
            begin_run(
                self.store, run_id, workflow, parameters,
                checkpoint=self.checkpointing or finished is not None, recorded=self.recording,
            )  # fmt: skip
            restored = [workflow.plan.nodes[i].node_id for i in finished or ()]
            checkpointer = Checkpointer(
                self.store, allow_pickle=self.allow_pickle, restored=restored,
                write_outputs=self.checkpointing or finished is not None,
                sync=self.mode == "sync",
            )  # fmt: skip
            extra.append(checkpointer)
        if self.recording or self.cache is not None:
            # a cache that names no store caches into the run's own (one run, one store)
            where = self.cache.path if self.cache is not None else None
            store = self.store if self.recording else Store.open(where or self._store)
            calls = RunCalls(store, run_id, record=self.recording, cache=self.cache)
        with _active(calls, self._store):  # the run copies this context for its nodes
            run = make_run(extra)
        run.record.interrupts.extend(asked)  # a resumed run's earlier pauses, answered or not
        if checkpointer is not None and checkpointer.sync and checkpointer.write_outputs:
            run.commit = checkpointer.commit  # the driver commits before anyone sees a node end
        if checkpointer is None and calls is None:
            return run, nullcontext()
        return run, _around_drive(checkpointer, run, calls, self._store)

    def resumed(
        self,
        run_id: str,
        workflow: Workflow,
        answers: Mapping[str, Any] | None = None,
        by: str | None = None,
    ) -> Resumed:
        """What run `run_id` of `workflow` resumes from: `RunNotFoundError`,
        `WorkflowChangedError` (nothing runs then). `answers` (interrupt id -> answer) are
        checked and stored first, with `by` (see `kaizen.store.interrupts.answer`: a typed
        error changes nothing); a run that waits may be resumed without answers too (its
        waiting nodes run again and ask again what is still unanswered)."""
        info = load_run(self.store, run_id)
        check_fingerprint(info, workflow)
        answered: list[Interrupt] = []
        if answers is not None or info.status in WAITING_STATUSES:
            answered = answer(self.store, run_id, answers or {}, by)
        done = load_checkpoints(self.store, run_id)
        index = workflow.plan.index
        finished = {index[node]: outputs for node, outputs in done.items()}
        resumes = {
            index[node]: pause
            for node, pause in load_resumes(self.store, run_id).items()
            if node in index and node not in done
        }
        asked = load_interrupts(self.store, run_id)
        if not answered:  # answered before this resume (`kaizen approve`): since the last pause
            paused_at = {i.node_id: i.created_at for i in asked}
            answered = [
                i for i in asked
                if i.answered and (i.answered_at or 0) >= paused_at.get(i.node_id, 0)
            ]  # fmt: skip
        return Resumed(info.parameters, finished, resumes, asked, answered)

    def replaying(
        self, run_id: str, workflow: Workflow
    ) -> tuple[str, dict[str, Any], AbstractContextManager[None]]:
        """`(replay run id, parameters, what to hold while the replay is made and driven)`
        for recorded run `run_id` of `workflow`."""
        info = load_run(self.store, run_id)
        if not info.recorded:
            raise RunNotFoundError(
                f"run {run_id!r} was not recorded (run it with LocalRuntime(record=True) to "
                "replay it)",
                path=self.store.path,
            )
        check_fingerprint(info, workflow)
        replay_id = f"{run_id}-replay-{os.urandom(4).hex()}"
        calls = RunCalls(self.store, replay_id, replay_of=run_id)
        return replay_id, info.parameters, _active(calls, self.store)


@contextmanager
def _active(calls: RunCalls | None, store: Store | None) -> Iterator[None]:
    """Code in this block (a run's nodes) sees the run's calls (record, replay, cache) and its
    store (`kaizen.store.db.run_store`: every row of the run goes there, approvals too)."""
    calls_token = active_calls.set(calls) if calls is not None else None
    store_token = run_store.set(store)
    try:
        yield
    finally:
        run_store.reset(store_token)
        if calls_token is not None:
            active_calls.reset(calls_token)


@contextmanager
def _around_drive(
    checkpointer: Checkpointer | None, run: Run, calls: RunCalls | None, store: Store | None
) -> Iterator[None]:
    """Around a run's drive: the run's calls are active (nodes run inline in the caller's
    context see them too; the others got them with the context the run copied when it was
    made), and a checkpoint write that failed is raised when the run ends (hooks never stop a
    run), with the run id and results, so what completed is not lost."""
    with _active(calls, store):
        yield
    failure = checkpointer.failure if checkpointer is not None else None
    if failure is None:
        return
    failure.add_note(
        f"run {run.run_id!r} finished ({run.record.summary()}); its results are "
        "in runtime.get_record / the error's `results`, but the store missed some of them"
    )
    failure.run_id = run.run_id  # type: ignore[attr-defined]
    failure.results = run.results  # type: ignore[attr-defined]
    raise failure


class Resumed(NamedTuple):
    """What a resumed run starts from (`Durability.resumed`)."""

    parameters: dict[str, Any]
    finished: dict[int, dict[str, Any]]  # node index -> outputs of the nodes that completed
    resumes: dict[int, tuple[dict[int, Any], Any]]  # node index -> answers, saved state
    asked: list[Interrupt]  # the run's interrupts so far, answered or not
    answered: list[Interrupt]  # those answered for this resume


class Checkpointer(NodeFinishHook, NodeWaitHook, RunFinishHook):
    """What persists each completed node's outputs (see `kaizen.store.runs`), in one of two
    modes (docs/state.md, "Durability modes"):

    - `sync` (the default): the driver calls `commit(finished)` with the nodes that just
      completed, all of them together (group commit), *before* their dependants start and
      before any hook or stream hears they finished. One transaction, on the driver thread. A
      node whose dependants started, or whose completion anyone saw, is in the store.
    - `async`: this hook hands each completed node's row to the store's `BatchWriter` when the
      node finishes (`on_node_finish`); the row commits a few milliseconds later, on the
      writer's thread. A process killed meanwhile re-runs those nodes on resume
      (at-least-once).

    At the run's end the run's row is finished and every row of the run waited for. A write
    that fails (disk full, a value that cannot be encoded) is kept in `failure` and the runtime
    raises it when the run ends, since hooks never stop a run; what was written before stays.
    `restored` names nodes whose outputs came from the store (a resumed run): they are not
    written again.
    """

    name = "kaizen.checkpoint"

    def __init__(
        self,
        store: Store,
        *,
        allow_pickle: bool = False,
        restored: Iterable[str] = (),
        write_outputs: bool = True,
        sync: bool = False,
    ) -> None:
        self.store = store
        self.write_outputs = write_outputs
        self.allow_pickle = allow_pickle
        self.sync = sync
        self.restored = frozenset(restored)
        self.failure: Exception | None = None
        self._told = False  # whether `failure` was raised to the hooks' record already
        self._writer: BatchWriter | None = None  # attached at the first row

    def write_failed(self, error: Exception) -> None:
        """The writer could not store one of this run's rows (called on its thread)."""
        if self.failure is None:
            self.failure = error

    def _row(
        self, run_id: str, node_id: str, outputs: Mapping[str, Any], finished: float, attempts: int
    ) -> tuple[Any, ...]:
        encoding, data = encode_outputs(outputs, node_id=node_id, allow_pickle=self.allow_pickle)
        return (run_id, node_id, encoding, data, finished, attempts)

    def commit(self, run_id: str, finished: Iterable[tuple[str, Any, float, int]]) -> None:
        """`sync` mode: store the outputs of nodes that just completed, as
        `(node_id, outputs, finished, attempts)`, in one transaction, before the driver lets
        anything depend on them. A row that cannot be encoded or written is kept in `failure`
        (raised when the run ends), and the others are still committed."""
        rows = []
        for node_id, outputs, ended, attempts in finished:
            if node_id in self.restored:
                continue
            try:
                rows.append(self._row(run_id, node_id, outputs, ended, attempts))
            except Exception as exc:
                self.write_failed(exc)
        if not rows:
            return
        try:
            with self.store.write(idempotent=True) as db:  # (ON CONFLICT DO NOTHING)
                db.executemany(INSERT_CHECKPOINT, rows)
        except Exception as exc:
            self.write_failed(exc)

    def on_node_finish(self, event: NodeFinished) -> None:
        run_id, node_id, outputs = event.run_id, event.node_id, event.outputs
        if self.sync or not self.write_outputs:
            return  # sync: the driver committed it already (`commit`)
        if event.status is not NodeStatus.COMPLETED or outputs is None or node_id in self.restored:
            return
        try:
            row = self._row(run_id, node_id, outputs, event.finished, event.attempts)
        except Exception as exc:
            self.write_failed(exc)
            self._told = True
            raise
        writer = self._writer
        if writer is None:
            writer = self._writer = attach(self.store)
        writer.submit(INSERT_CHECKPOINT, row, self)

    def on_node_wait(self, event: NodeWaiting) -> None:
        """A node paused for a person: what it asked and the state it saved, stored at once
        (pauses are rare; the run cannot be resumed without them)."""
        if not self.write_outputs:
            return
        try:
            save_pause(self.store, event.run_id, event.node_id, event.interrupts, event.state)
        except Exception as exc:
            self.write_failed(exc)
            self._told = True
            raise

    def on_run_finish(self, event: RunFinished) -> None:
        run_id, status, record = event.run_id, event.status, event.record
        writer, self._writer = self._writer, None
        try:
            finished = (stored_status(status, record), time.time(), record_json(record), run_id)
        except Exception as exc:
            self.write_failed(exc)
            finished = None
        if writer is None:
            if finished is not None:
                try:
                    with self.store.write() as db:
                        db.execute(FINISH_RUN, finished)
                except Exception as exc:
                    self.write_failed(exc)
        else:
            try:
                if finished is not None:
                    writer.submit(FINISH_RUN, finished, self)
                writer.flush()
            finally:
                detach(writer)
        if self.failure is not None and not self._told:
            self._told = True
            raise self.failure  # into the run's hook_errors; the runtime raises it at the end


def replay(
    run_id: str, workflow: Workflow, *, path: StorePath | Store | None = None
) -> tuple[dict[str, dict[str, Any]], str]:
    """Re-execute recorded run `run_id` of `workflow` (from the store at `path`, else the
    default store) with every model and tool call served from its recording: no model and no
    tool is reached, and the results are the recorded run's. Returns `(results, replay_run_id)`.

    Raises `RunNotFoundError` (no such recorded run), `WorkflowChangedError` (another workflow),
    `ReplayMismatchError` (a call the recording does not hold: the node and what differs)."""
    from kaizen.runtime.local import LocalRuntime

    with LocalRuntime(record=Store.open(path)) as runtime:
        return runtime.replay(run_id, workflow)
