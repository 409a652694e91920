"""`RayRuntime`: `LocalRuntime` whose runs get a Ray executor. It connects to the cluster once,
and owns the waiter thread and the placement (tasks and model actors) its runs share."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from kaizen.logs import host_logging_kept
from kaizen.retrying import RetryPolicy
from kaizen.runtime.budget import Budget
from kaizen.runtime.local import EventCallbackFn, FailurePolicy, LocalRuntime
from kaizen.runtime.ray.executor import RayExecutor
from kaizen.runtime.ray.placement import Placement
from kaizen.runtime.ray.waiter import Waiter

if TYPE_CHECKING:
    from kaizen.runtime.driver import Results, Run
    from kaizen.runtime.record import RunRecord
    from kaizen.store.db import Store, StorePath
    from kaizen.workflow.workflow import Workflow

__all__ = ["RayRuntime"]


class RayRuntime(LocalRuntime):
    """Runs workflows on a Ray cluster: every node attempt is a Ray task.

    Same API, results, statuses, skip reasons, hooks and `RunRecord` as `LocalRuntime`
    (`execute`, `execute_with_record`, `execute_async`, `stream`, `stream_sync`, `resume`);
    `NodeRun.worker` says where each node ran.

    `address`: None starts a local cluster in this process unless Ray is already initialised
    (then that cluster is used), `"auto"` joins the cluster running on this machine,
    `"ray://host:10001"` a remote one through Ray Client. `runtime_env` (Ray's: `pip`,
    `env_vars`, `working_dir`, ...) applies to every task. `init_options` go to `ray.init`.
    `max_concurrency` bounds the tasks of one run in flight at once. `num_cpus` is what a node
    asks for unless its `ExecutionPolicy` says otherwise; `model_num_cpus` what a model-bound
    node asks for. Model-bound nodes with an async `arun` (agents) run on `model_actors` async
    actors of `model_num_cpus` each, many calls at once per actor (None: one per CPU of the
    cluster, at most 8; 0: every node is a task); unless their policy asks for its own
    `num_cpus` or `resources`, which only a task gets. `worker_retries`: how many times an
    attempt whose worker (or actor) died is run again, on top of the node's own `retries`.
    """

    def __init__(
        self,
        address: str | None = None,
        max_concurrency: int = 64,
        failure_policy: FailurePolicy = "fail_fast",
        budget: Budget | None = None,
        *,
        runtime_env: Mapping[str, Any] | None = None,
        num_cpus: float = 1.0,
        model_num_cpus: float = 0.25,
        worker_retries: int = 3,
        model_actors: int | None = None,
        init_options: Mapping[str, Any] | None = None,
        hooks: Iterable[object] = (),
        keep_records: int = 100,
        checkpoint: bool | StorePath | Store = False,
        allow_pickle: bool = False,
        durability: Literal["sync", "async"] = "sync",
    ) -> None:
        super().__init__(
            max_concurrency, failure_policy, budget, hooks=hooks, keep_records=keep_records,
            checkpoint=checkpoint, allow_pickle=allow_pickle, durability=durability,
        )  # fmt: skip
        if num_cpus < 0 or model_num_cpus < 0:
            raise ValueError("num_cpus and model_num_cpus must be >= 0")
        if worker_retries < 0:
            raise ValueError(f"worker_retries must be >= 0, got {worker_retries!r}")
        if model_actors is not None and model_actors < 0:
            raise ValueError(f"model_actors must be >= 0 or None, got {model_actors!r}")
        self.address = address
        self.runtime_env = dict(runtime_env) if runtime_env else None
        self.num_cpus = num_cpus
        self.model_num_cpus = model_num_cpus
        self.worker_retries = worker_retries
        self.model_actors = model_actors
        self.init_options = dict(init_options or {})
        self._connect_lock = threading.Lock()
        self._waiter: Waiter | None = None
        # where each attempt runs (a task, or a call on a model actor)
        self.placement = Placement(num_cpus, model_num_cpus, model_actors, runtime_env=None)

    def close(self) -> None:
        """Stop this runtime's waiter thread and kill its model actors (the cluster is left
        running: `ray.shutdown()`)."""
        super().close()
        if self._waiter is not None:
            self._waiter.close()
        self.placement.close()

    async def _replay(
        self,
        run_id: str,
        workflow: Workflow,
        on_event: EventCallbackFn | None,
        hooks: Iterable[object],
        inline_allowed: bool,
    ) -> tuple[Results, RunRecord]:
        """Not on Ray: recorded calls are served in this process only. Replay with
        `LocalRuntime(record=True)`'s store and `LocalRuntime.replay`."""
        raise NotImplementedError(
            "RayRuntime cannot replay a recorded run (the recording is served in this process, "
            "the nodes run on workers); replay it with LocalRuntime().replay(run_id, workflow)"
        )

    # -- the seam: how runs make their executors --------------------------------------------------

    def _executors(self) -> Callable[[Run], RayExecutor]:
        self._connect()
        waiter, placement = self._waiter, self.placement
        assert waiter is not None
        worker_retries = RetryPolicy(retries=self.worker_retries)
        return lambda run: RayExecutor(run, placement, waiter, worker_retries)

    def _connect(self) -> None:
        """Join (or start) the cluster, once; start the waiter."""
        with self._connect_lock:
            if self._waiter is not None:
                return
            with host_logging_kept():
                import ray

            if not ray.is_initialized():
                options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
                options.update(self.init_options)
                if self.runtime_env:
                    options["runtime_env"] = self.runtime_env
                ray.init(address=self.address, **options)
            elif self.runtime_env:  # Ray was started by someone else: runtime_env per task
                self.placement.runtime_env = dict(self.runtime_env)
            self._waiter = Waiter()
            weakref.finalize(self, self._waiter.close)
