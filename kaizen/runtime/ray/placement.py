"""Where a node's attempts run on the Ray cluster: `Placement` owns that choice, so the executor
never asks the runtime.

A node becomes a Ray task asking for its `ExecutionPolicy.num_cpus` / `resources` (default: the
runtime's `num_cpus`, or `model_num_cpus` for model-bound nodes), one remote function per kind,
made once. A model-bound node whose `arun` is async (an agent) goes instead to the least-loaded
of a small pool of async actors (`ModelPool`: `model_actors` of them, each asking for
`model_num_cpus`): an agent spends its time waiting on its model, so one process awaits many at
once, where a task would hold a whole worker for each. The pool is made on first use (again if
Ray was restarted) and lives until `close()`. `ray` is imported lazily.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from kaizen.runtime.ray.worker import ModelActor, NodeTask, run_task
from kaizen.workflow.plan import NodePlan

__all__ = ["ModelPool", "Placement"]

ActorCall = tuple["ModelPool", int]  # the pool and which of its actors a call went to


class Placement:
    """One runtime's choice of where each attempt runs: a task, or a call on a model actor.

    `model_actors`: how many model actors (None: one per CPU of the cluster, at most 8; 0: every
    node is a task). `runtime_env`: given to every task and actor (only when Ray was started by
    someone else: otherwise the cluster itself has it)."""

    def __init__(
        self,
        num_cpus: float,
        model_num_cpus: float,
        model_actors: int | None,
        runtime_env: Mapping[str, Any] | None,
    ) -> None:
        self.num_cpus = num_cpus
        self.model_num_cpus = model_num_cpus
        self.model_actors = model_actors
        self.runtime_env = dict(runtime_env) if runtime_env else None
        self._lock = threading.Lock()
        self._remotes: dict[tuple[Any, ...], Any] = {}
        self._pool: ModelPool | None = None

    def on_actor(self, p: NodePlan) -> bool:
        """Whether node `p` runs as a call on the model actors rather than as a task."""
        policy = p.node.policy
        return (
            p.node.model_bound
            and p.is_async
            and self.model_actors != 0
            and policy.num_cpus is None
            and not policy.resources
        )

    def send(
        self, p: NodePlan, task: NodeTask, upstream: Sequence[Any]
    ) -> tuple[Any, ActorCall | None]:
        """Start one attempt of `p` where it belongs: its ObjectRef, and the actor call it
        became (None for a task; `ModelPool.done` it when the call is over)."""
        if self.on_actor(p):
            pool = self.model_pool()
            ref, slot = pool.call(task, upstream)
            return ref, (pool, slot)
        return self.remote_for(p).remote(task, *upstream), None

    def model_pool(self) -> ModelPool:
        """The pool of model actors, made on first use (again if Ray was restarted)."""
        with self._lock:
            pool = self._pool
            if pool is None or not pool.alive():
                pool = self._pool = ModelPool(
                    self.model_actors, self.model_num_cpus, self.runtime_env
                )
            return pool

    def remote_for(self, p: NodePlan) -> Any:
        """The Ray remote function with the options node `p` asks for (made once per kind)."""
        policy = p.node.policy
        cpus = policy.num_cpus
        if cpus is None:
            cpus = self.model_num_cpus if p.node.model_bound else self.num_cpus
        resources = tuple(sorted((policy.resources or {}).items()))
        key = (cpus, resources)
        with self._lock:
            remote = self._remotes.get(key)
            if remote is None:
                import ray

                options: dict[str, Any] = {"num_cpus": cpus, "max_retries": 0}
                if resources:
                    options["resources"] = dict(resources)
                if self.runtime_env:
                    options["runtime_env"] = self.runtime_env
                remote = self._remotes[key] = ray.remote(run_task).options(**options)
        return remote

    def close(self) -> None:
        """Kill the model actors (if any were made)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


_ACTOR_CALLS = 1000  # calls one model actor runs at once (they are asyncio tasks, mostly waiting)
_MAX_DEFAULT_ACTORS = 8


class ModelPool:
    """A runtime's async Ray actors for model-bound nodes, made on first use: each call goes to
    the actor with the fewest calls in flight. Ray restarts an actor that dies; `close` (or the
    last reference to the pool going away) ends them."""

    def __init__(self, size: int | None, num_cpus: float, runtime_env: Any) -> None:
        import ray

        if size is None:
            cpus = ray.cluster_resources().get("CPU", 1.0)
            size = max(1, min(_MAX_DEFAULT_ACTORS, int(cpus)))
        options: dict[str, Any] = {
            "num_cpus": num_cpus,
            "max_concurrency": _ACTOR_CALLS,
            "max_restarts": -1,
            "max_task_retries": 0,  # a call lost with its actor is retried by the executor
        }
        if runtime_env:
            options["runtime_env"] = runtime_env
        actor_class = ray.remote(ModelActor).options(**options)
        self.session = ray.get_runtime_context().get_session_name()
        self.actors: list[Any] = [actor_class.remote() for _ in range(size)]
        self.load = [0] * size
        self._lock = threading.Lock()

    def alive(self) -> bool:
        """Whether the pool belongs to the Ray session running now."""
        import ray

        return ray.is_initialized() and ray.get_runtime_context().get_session_name() == self.session

    def call(self, task: NodeTask, upstream: Sequence[Any]) -> tuple[Any, int]:
        """Send one attempt to the least-loaded actor: its ObjectRef and which actor it went to."""
        with self._lock:
            slot = min(range(len(self.load)), key=self.load.__getitem__)
            self.load[slot] += 1
        try:
            return self.actors[slot].run.remote(task, *upstream), slot
        except BaseException:
            self.done(slot)
            raise

    def done(self, slot: int) -> None:
        with self._lock:
            self.load[slot] -= 1

    def close(self) -> None:
        import ray

        actors, self.actors = self.actors, []
        if not ray.is_initialized():
            return
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)
