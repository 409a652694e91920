"""`RunManager`: the runs a `kaizen serve` process started, on the server's event loop.

`submit(parameters)` makes a `ServedRun` and starts it as a task at once; the request that
posted it returns without waiting. At most `max_active` runs execute together, the others wait
``queued``. A run executes on the manager's `LocalRuntime` (`execute_async_with_record`) with
one hook, whose moments (run and node moments, tool calls, streamed text) become the run's
numbered events (`kaizen.serve.sse.frame`); the last one is ``done``. Whatever a run raises ends it
``failed`` with the reason; a cancelled run ends ``cancelled``; nothing leaves the task.

Every run is checkpointed into the store (`durability="sync"`: a node whose completion anyone
saw is not run again), and the worker executing it holds a lease on it
(`kaizen.serve.leases`): a worker that dies stops renewing, and another worker on the store (or
this one, restarted) takes the run over and resumes it from its checkpoints, its events going
on from the last one stored. A client is only sent events already committed, so after a
takeover no event id it saw is reused or skipped.

Everything is written to the store as it happens (`kaizen.store.served.ServedRunLog`, group
commit on the store writer's thread). Finished runs stay in memory (the newest `keep_finished`
of them, once the store has them) for fast reads; older ones are read from the store, as are
runs another server process started. Only the loop's thread touches a `ServedRun`; node threads
hand their events over with `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kaizen.errors import RunConflictError, RunNotFoundError
from kaizen.moments import ChunkReceived, Moment, RunStarted, ToolCallFinished, ToolCallStarted
from kaizen.runtime.hooks import MomentHook
from kaizen.serve.leases import Leases
from kaizen.serve.run import ServedRun
from kaizen.serve.sse import dumps, frame
from kaizen.store.served import (
    ClaimedRun,
    ServedRunLog,
    ServedRunRow,
    cancel_requests,
    load_served_run,
)
from kaizen.text import first_line

if TYPE_CHECKING:
    from kaizen.runtime.local import LocalRuntime
    from kaizen.runtime.record import RunRecord
    from kaizen.serve.target import ServedTarget
    from kaizen.store.db import Store
    from kaizen.workflow.workflow import Workflow

__all__ = ["RunConflictError", "RunManager", "ServedRun"]

log = logging.getLogger("kaizen.serve")

CANCEL_POLL_SECONDS = 1.0  # how often cancels asked through another process are looked for


class RunManager:
    """Starts, tracks, cancels and stores served runs (see the module docstring)."""

    def __init__(
        self,
        target: ServedTarget,
        store: Store,
        *,
        runtime: LocalRuntime | None = None,
        max_active: int = 512,
        keep_finished: int = 2000,
        stream_content: bool = True,
        leases: Leases | None = None,
        take_over: bool = True,
        record: bool = False,
    ) -> None:
        """`stream_content`: send agents' replies as ``content`` events as they arrive. Their
        model calls then stream, which costs litellm about 4x the CPU of a plain call (7 ms
        more per call, measured here); turn it off for throughput. Tool calls are sent either
        way. `leases`: this worker's leases (default: `Leases(store)`); `take_over`: claim
        and resume the runs whose lease expired (a dead worker's). `record`: record every
        model and tool call of each run (prompts and replies for the run browser; replay)."""
        if max_active < 1:
            raise ValueError(f"max_active must be at least 1, got {max_active!r}")
        self.target = target
        self.store = store
        self.max_active = max_active
        self.keep_finished = keep_finished
        self.stream_content = stream_content
        self._runtime = runtime
        self._runs: dict[str, ServedRun] = {}  # live runs, and finished ones kept in memory
        self._finished: OrderedDict[str, None] = OrderedDict()  # finished, oldest first
        self._unstored: list[ServedRun] = []  # finished, rows maybe not committed yet
        self._log: ServedRunLog | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._active: asyncio.Semaphore | None = None
        self._background: list[asyncio.Task[None]] = []
        self._stored = asyncio.Event()
        self.leases = leases if leases is not None else Leases(store)
        self.take_over = take_over
        self.record = record
        self._held: set[str] = set()  # the runs the last renewal said this worker holds

    @property
    def runtime(self) -> LocalRuntime:
        if self._runtime is None:
            from kaizen.runtime.local import LocalRuntime

            # every served run is checkpointed into the serve store: a run that waits for a
            # person is resumed from there, by whichever worker gets the answers
            self._runtime = LocalRuntime(
                keep_records=16, checkpoint=self.store, record=self.store if self.record else False
            )
        return self._runtime

    async def open(self) -> None:
        """Start on the running loop (the server's lifespan calls this)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._active = asyncio.Semaphore(self.max_active)
        self._log = await asyncio.to_thread(ServedRunLog, self.store)
        if _calls_models(self.target.workflow):
            # litellm takes seconds to import; on the first run's call it would stall the loop
            from kaizen.llm.litellm_adapter import load_litellm

            await asyncio.to_thread(load_litellm)
        self._background = [
            asyncio.create_task(self._store_finished()),
            asyncio.create_task(self._watch_cancels()),
            asyncio.create_task(self._keep_leases()),
        ]

    async def close(self) -> None:
        """Cancel the runs still going, wait for them, and commit everything."""
        live = [run.task for run in self._runs.values() if run.task is not None]
        for task in live:
            task.cancel()
        if live:
            await asyncio.wait(live, timeout=10)
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._log is not None:
            await asyncio.to_thread(self._log.close)
        if self._runtime is not None:
            self._runtime.close()

    # -- runs --------------------------------------------------------------------------------------

    def submit(self, body: dict[str, Any], parameters: Mapping[str, Any]) -> ServedRun:
        """Start a run of the target with checked `parameters` (`body`: as posted)."""
        run = self._new_run(body)
        run.task = asyncio.create_task(self._execute(run, parameters))
        return run

    def _new_run(self, body: dict[str, Any]) -> ServedRun:
        """A new run (`body`: what was posted), held and written to the store under a lease."""
        assert self._log is not None, "RunManager.open() was not awaited"
        run = ServedRun(os.urandom(16).hex(), body)
        self._runs[run.run_id] = run
        self._log.created(run.run_id, self.target.name, run.status, dumps(body), run.created,
                          self.leases.owner, self.leases.until())  # fmt: skip
        return run

    async def committed(self) -> None:
        """Wait until the rows written so far (a new run's, say) are committed, so any worker
        on the store answers for the run (group commit: concurrent requests share commits)."""
        assert self._log is not None, "RunManager.open() was not awaited"
        await self._log.aflush()

    def live(self, run_id: str) -> ServedRun | None:
        """The run if this process holds it in memory."""
        return self._runs.get(run_id)

    def cancel(self, run_id: str) -> bool:
        """Cancel a run of this process; False when it is not running here."""
        run = self._runs.get(run_id)
        if run is None or run.is_finished or run.task is None:
            return False
        run.task.cancel()
        return True

    async def wait_stored(self) -> None:
        """Wait until every finished run's rows are committed (tests, shutdown)."""
        while self._unstored or any(not r.stored for r in self._runs.values() if r.is_finished):
            self._stored.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stored.wait(), 1)

    async def resume(self, run_id: str, answers: Mapping[str, Any], by: str | None) -> ServedRun:
        """Continue waiting run `run_id` (started by any worker on the store) with `answers`
        (interrupt id -> answer), given `by`. Returns once the answers are taken and the run
        goes on; raises, taking nothing: `RunNotFoundError`, `RunNotWaitingError` (finished,
        cancelled, or resumed by another request first), `UnknownInterruptError`,
        `InterruptAnswerError`."""
        assert self._loop is not None and self._log is not None
        row = await self._stored_row(run_id)
        run = await self._continued(run_id, row.parameters, row.created, "waiting")
        taken: asyncio.Future[None] = self._loop.create_future()
        run.task = asyncio.create_task(self._execute(run, None, (answers, by, taken)))
        await taken  # the answers were checked and stored, or this raises why not
        self._runs[run_id] = run
        return run

    async def retry(self, run_id: str) -> ServedRun:
        """Resume failed or cancelled run `run_id` from its checkpoints, under its own id: what
        completed is not run again. `RunNotFoundError` when the store has no such run;
        `RunConflictError` when it did not fail or was not cancelled, when another request
        resumed it first (compare-and-set in the store), or when its inputs no longer fit."""
        from kaizen.serve.target import RequestProblems
        from kaizen.store.served import reopen

        row = await self._stored_row(run_id)
        try:
            parameters = self.target.check(row.parameters)
        except RequestProblems as exc:
            raise RunConflictError(f"run {run_id!r} cannot be resumed here: {exc}") from None
        taken = await asyncio.to_thread(
            reopen, self.store, run_id, self.leases.owner, self.leases.until()
        )
        if not taken:
            raise RunConflictError(
                f"run {run_id!r} is {row.status}: only a failed or cancelled run is resumed "
                "from its checkpoints"
            )
        run = await self._continued(run_id, row.parameters, row.created)
        self._runs[run_id] = run
        self._set_status(run, "running")
        run.task = asyncio.create_task(self._execute(run, parameters, taken_over=True))
        return run

    async def replay(self, run_id: str) -> ServedRun:
        """A new run with recorded run `run_id`'s parameters, every model and tool call served
        from its recording (`kaizen.replay`). `RunNotFoundError` when the run is unknown or
        was not recorded."""
        from kaizen.store.runs import load_run

        info = await asyncio.to_thread(load_run, self.store, run_id)
        if not info.recorded:
            raise RunNotFoundError(
                f"run {run_id!r} was not recorded: serve with record=True (`kaizen serve "
                "--record`) to replay its runs",
                path=self.store.path,
            )
        run = self._new_run({"replay_of": run_id})
        run.task = asyncio.create_task(self._execute(run, None, replay_of=run_id))
        return run

    async def _stored_row(self, run_id: str) -> ServedRunRow:
        """The store's row of run `run_id` (any worker's); `RunNotFoundError` if none."""
        row = await asyncio.to_thread(load_served_run, self.store, run_id)
        if row is None:
            raise RunNotFoundError(f"no run {run_id!r}", path=self.store.path)
        return row

    def forget(self, run: ServedRun) -> None:
        """Stop answering for `run` from memory (the store holds what it became)."""
        if self._runs.get(run.run_id) is run:
            del self._runs[run.run_id]

    async def _continued(
        self, run_id: str, parameters: dict[str, Any], created: float, status: str = "queued"
    ) -> ServedRun:
        """A run another worker (or an earlier pause) left in the store, to go on here: its
        stored events kept, so their numbering goes on from the last one."""
        from kaizen.store.served import load_served_events

        events = await asyncio.to_thread(load_served_events, self.store, run_id, 0)
        run = ServedRun(run_id, parameters, status=status, created=created)
        run.events = [(e.seq, e.kind, e.data) for e in events]
        return run

    async def cancel_waiting(self, run_id: str) -> None:
        """Cancel waiting run `run_id` (no worker holds it): compare-and-set in the store, so
        of a cancel and a resume racing for it exactly one wins (`RunNotWaitingError` for the
        loser); its stream ends with ``done``."""
        from kaizen.store.interrupts import cancel_waiting
        from kaizen.store.served import load_served_events

        assert self._log is not None
        await asyncio.to_thread(cancel_waiting, self.store, run_id)
        events = await asyncio.to_thread(load_served_events, self.store, run_id, 0)
        error = "the run was cancelled while it waited for a person"
        seq = (events[-1].seq if events else 0) + 1
        done = {"run_id": run_id, "status": "cancelled", "results": None, "error": error}
        self._log.event(run_id, seq, "done", dumps(done))
        self._log.finished(run_id, "cancelled", results=None, error=error, record=None)
        await self._log.aflush()

    async def _execute(
        self,
        run: ServedRun,
        parameters: Mapping[str, Any] | None,
        resuming: tuple[Mapping[str, Any], str | None, asyncio.Future[None]] | None = None,
        taken_over: bool = False,
        replay_of: str | None = None,
    ) -> None:
        from kaizen.errors import BudgetExceededError, NodeExecutionError, RunNotFoundError

        assert self._active is not None and self._log is not None
        results: Any = None
        record: RunRecord | None = None
        try:
            async with self._active:
                frames = _Frames(self, run)
                if taken_over:  # a dead worker's run: what it completed is not run again
                    try:
                        raw, record = await self.runtime.run(
                            self._workflow, run_id=run.run_id, hooks=[frames], resume=True
                        )
                    except RunNotFoundError:  # it died before the run's first row
                        raw, record = await self.runtime.execute_async_with_record(
                            self._workflow, parameters, run_id=run.run_id, hooks=[frames]
                        )
                elif replay_of is not None:  # calls served from that run's recording
                    self._set_status(run, "running")
                    raw, record = await self.runtime.run(
                        self._workflow, run_id=replay_of, hooks=[frames], replay=True
                    )
                elif resuming is None:
                    self._set_status(run, "running")
                    raw, record = await self.runtime.execute_async_with_record(
                        self._workflow, parameters, run_id=run.run_id, hooks=[frames]
                    )
                else:
                    answers, by, taken = resuming
                    frames.taken = taken
                    try:
                        raw, record = await self.runtime.run(
                            self._workflow, run_id=run.run_id, hooks=[frames], resume=True,
                            answers=answers, by=by,
                        )  # fmt: skip
                    except Exception as exc:
                        if not taken.done():  # refused before it began: nothing changed
                            taken.set_exception(exc)
                            return
                        raise
            if str(record.status) == "waiting":
                await self._wait(run, record)
                return
            results = self.target.results(raw)
            status = "completed" if str(record.status) == "completed" else "failed"
            error = None if status == "completed" else _failure_of(record)
        except asyncio.CancelledError:
            status, error = "cancelled", "the run was cancelled"
        except (NodeExecutionError, BudgetExceededError) as exc:
            status, error = "failed", first_line(exc)
            results = self.target.results(exc.results or {})
        except Exception as exc:  # a run's failure is the run's, never the server's
            log.exception("kaizen serve: run %s failed unexpectedly", run.run_id)
            status, error = "failed", f"{type(exc).__name__}: {first_line(exc)}"
        try:
            self._finish(run, status, results, error, record or run.record)
        except Exception:
            log.exception("kaizen serve: run %s could not be finished", run.run_id)

    @property
    def _workflow(self) -> Workflow:
        return self.target.workflow

    def _finish(
        self, run: ServedRun, status: str, results: Any, error: str | None, record: Any
    ) -> None:
        from kaizen.store.runs import record_json

        assert self._log is not None
        if run.lost:  # another worker took it over: the end is that worker's to write
            run.task = None
            run.notify()
            return
        results_text = json.dumps(results, ensure_ascii=False, default=str)
        record_text = record_json(record) if record is not None else None
        run.results = json.loads(results_text)
        run.record_data = json.loads(record_text) if record_text is not None else None
        run.error = error
        run.finished = time.time()
        self._add(run, "done", {"run_id": run.run_id, "status": status,
                                "results": run.results, "error": error})  # fmt: skip
        run.status = status
        self._log.finished(
            run.run_id, status, results=results_text, error=error, record=record_text,
            finished=run.finished, owner=self.leases.owner,
        )  # fmt: skip
        run.task = None
        self._unstored.append(run)
        run.notify()

    async def _wait(self, run: ServedRun, record: RunRecord) -> None:
        """The run waits for a person (its interrupt events were sent): the store holds it
        (committed before anyone is told), and this process lets it go, so whichever worker
        gets the answers resumes it."""
        from kaizen.store.runs import record_json

        assert self._log is not None
        run.record_data = json.loads(record_json(record))
        run.task = None
        self._log.status(run.run_id, "waiting")
        await self._log.aflush()
        run.status = "waiting"
        run.notify()  # live streams end here; a reconnecting client follows the store
        self._unstored.append(run)

    def _set_status(self, run: ServedRun, status: str) -> None:
        assert self._log is not None
        run.status = status
        self._log.status(run.run_id, status)

    def _add(self, run: ServedRun, kind: str, data: dict[str, Any]) -> None:
        """Number and keep one event, write it, wake the run's readers (loop thread only)."""
        assert self._log is not None
        if run.lost:
            return
        seq = len(run.events) + 1
        text = dumps(data)
        run.events.append((seq, kind, text))
        self._log.event(run.run_id, seq, kind, text)
        run.notify()

    def _heard(self, run: ServedRun, event: Moment) -> None:
        """A moment of the run (from the driver, or a node's thread): its frame, in order."""
        converted = frame(event)
        if converted is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._add(run, *converted)
        else:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._add, run, *converted)

    # -- background work ---------------------------------------------------------------------------

    async def _store_finished(self) -> None:
        """Mark finished runs stored once the writer committed them; forget the oldest beyond
        `keep_finished` (later reads come from the store)."""
        assert self._log is not None
        while True:
            if not self._unstored:
                await asyncio.sleep(0.05)
                continue
            batch, self._unstored = self._unstored, []
            await asyncio.to_thread(self._log.flush)
            for run in batch:
                run.stored = True
                if run.status == "waiting":  # the store answers for it from here on
                    if self._runs.get(run.run_id) is run:
                        del self._runs[run.run_id]
                    continue
                self._finished[run.run_id] = None
            while len(self._finished) > self.keep_finished:
                old, _ = self._finished.popitem(last=False)
                self._runs.pop(old, None)
            self._stored.set()

    async def _keep_leases(self) -> None:
        """Every lease interval: renew this worker's leases, stop the runs it lost, and take
        over the runs whose lease expired (see `kaizen.serve.leases`)."""
        while True:
            try:
                held = await asyncio.to_thread(self.leases.renew)
                for run_id in self._held - held:  # held before, not now: taken over
                    run = self._runs.get(run_id)
                    if run is not None and not run.is_finished and run.task is not None:
                        log.warning("kaizen serve: run %s was taken over; stopping it", run_id)
                        run.lost = True  # nothing more of it is written: it is not ours
                        run.task.cancel()
                        self.forget(run)
                self._held = held
                if self.take_over:
                    for claimed in await asyncio.to_thread(self.leases.claim):
                        await self._adopt(claimed)
            except Exception:
                log.exception("kaizen serve: could not renew or take over leases")
            await asyncio.sleep(self.leases.interval)

    async def _adopt(self, claimed: ClaimedRun) -> None:
        """Resume a run this worker just took over (its worker died)."""
        from kaizen.serve.target import RequestProblems

        assert self._log is not None
        mine = self._runs.get(claimed.run_id)
        if mine is not None and mine.task is not None and not mine.lost:
            return  # this worker still executes it (it was late renewing): it goes on
        run = await self._continued(claimed.run_id, claimed.parameters, claimed.created)
        self._runs[run.run_id] = run
        log.info("kaizen serve: taking over run %s", run.run_id)
        if claimed.cancel:
            self._finish(run, "cancelled", None, "the run was cancelled", None)
            return
        try:
            parameters = self.target.check(claimed.parameters)
        except RequestProblems as exc:  # (checked when posted: another target's run)
            self._finish(run, "failed", None, f"the run cannot be resumed here: {exc}", None)
            return
        self._set_status(run, "running")
        run.task = asyncio.create_task(self._execute(run, parameters, taken_over=True))

    async def _watch_cancels(self) -> None:
        """Cancel the runs of this process that another process was asked to cancel (heard at
        once on a store that notifies, else looked for every `CANCEL_POLL_SECONDS`)."""
        with self.store.follow("kaizen_cancel") as news:
            while True:
                await news.wait(CANCEL_POLL_SECONDS)
                await self._cancel_asked()

    async def _cancel_asked(self) -> None:
        """Cancel this process's live runs that the store says were asked to cancel."""
        live = [run_id for run_id, run in self._runs.items() if not run.is_finished]
        if not live:
            return
        try:
            asked = await asyncio.to_thread(cancel_requests, self.store, live)
        except Exception:
            log.exception("kaizen serve: could not read cancel requests")
            return
        for run_id in asked:
            self.cancel(run_id)


class _Frames(MomentHook):
    """A served run's moments as its numbered events: run and node moments, tool calls, and
    (with `stream_content`) agents' streamed text; keeps the live `RunRecord` for reads while
    it runs. Chunks are heard only when streamed: a hook listening is what makes model calls
    stream."""

    name = "kaizen.serve"

    def __init__(self, manager: RunManager, run: ServedRun) -> None:
        self.manager = manager
        self.run = run
        self.chunks = manager.stream_content

    def hears(self, moment: type[Moment]) -> bool:
        if moment is ChunkReceived:
            return self.chunks
        return moment.on_driver or moment in (ToolCallStarted, ToolCallFinished)

    taken: asyncio.Future[None] | None = None  # a resume: set once its answers are taken

    def on_moment(self, event: Moment) -> None:
        if isinstance(event, RunStarted) and self.taken is not None:
            taken, self.taken = self.taken, None
            loop = self.manager._loop
            assert loop is not None
            loop.call_soon_threadsafe(_took, taken, self.manager, self.run)
        if isinstance(event, RunStarted):
            self.run.record = event.record
        self.manager._heard(self.run, event)


def _took(taken: asyncio.Future[None], manager: RunManager, run: ServedRun) -> None:
    """A resume's answers were taken: the run runs again, on this worker's lease (loop
    thread)."""
    assert manager._log is not None
    manager._log.leased(run.run_id, manager.leases.owner, manager.leases.until())
    manager._set_status(run, "running")
    if not taken.done():
        taken.set_result(None)


def _calls_models(workflow: Workflow) -> bool:
    """Whether a node of `workflow` is an agent (its model calls go through litellm)."""
    return any(getattr(node, "agent", None) is not None for node in workflow.nodes.values())


def _failure_of(record: RunRecord) -> str:
    failed = [f"{n.node_id}: {n.error}" for n in record.nodes.values() if n.error]
    return "; ".join(failed) or f"the run ended {record.status}"
