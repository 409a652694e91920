"""`RayRuntime`: runs a workflow's nodes as Ray tasks, with `LocalRuntime`'s semantics.

This package owns everything Ray-specific (`ray` is imported lazily, inside it): connecting to the
cluster (`runtime.py`), the Ray executor (`executor.py`), where attempts run (`placement.py`:
tasks or model actors), the thread waiting on the cluster (`waiter.py`), and the worker's side of
a node with the errors of values that cannot be pickled (`worker.py`). The rest is
`LocalRuntime`'s: the same driver (`kaizen.runtime.driver`), dataflow state, hooks, record,
budgets and checkpoints. Only the executor differs:

    driver ── submit(job) ──> RayExecutor ── ray task (node, inputs, upstream ObjectRefs) ──> worker
       ^                          |                                                          |
       └── finished(outcome) ── settle <── the waiter: ray.wait on every outstanding ref <───┘

- A ready node becomes one Ray task per attempt (`worker.run_task`), asking the cluster for the
  node's `ExecutionPolicy.num_cpus` / `resources` (default: the runtime's `num_cpus`, or
  `model_num_cpus` for model-bound nodes such as agents). Its inputs that came from upstream
  nodes are passed as the upstream tasks' ObjectRefs, so Ray moves the values between workers
  and schedules by dependency; the driver never uploads them again.
- A model-bound node whose `arun` is async (an agent) runs instead as a call on one of a small
  pool of async Ray actors (`placement.ModelPool`, `model_actors` of them, each asking for
  `model_num_cpus`): an agent spends its time waiting on its model, so one process awaits many
  at once on its event loop, where a task would hold a whole worker for each. Upstream
  ObjectRefs, the report, retries, timeouts and dead workers are handled as for tasks; calls go
  to the least-loaded actor; the pool lives as long as the runtime (`close()` kills it).
- In the worker the node runs exactly as locally (`kaizen.runtime.attempt`: `run_attempt` /
  `arun_attempt`), with a `NodeContext` whose hooks are the worker's: a `Recorder` of a
  one-node record, the run's middleware, copies of the run's budgets, and a relay that keeps the
  model, tool and chunk moments. The task returns one pickled `WorkerReport`: outputs (or the
  error), timings, those moments and the node's part of the record.
- One waiter thread per runtime calls `ray.wait` on all outstanding refs and hands the finished
  (and the timed-out) to their run's event loop, where `RayExecutor.settle` replays the moments
  to the run's hooks, merges the node's record, applies the retry policy and reports the
  `Outcome` to the driver.

Retries follow the node's `ExecutionPolicy` (`retries`, `retry_on`, `backoff`), decided by
`kaizen.retrying.next_attempt` as locally. A worker that
dies mid-task (killed, out of memory, its machine lost) is a failed attempt too, retried up to
`worker_retries` times on top of the policy's; either way the record shows every attempt and a
`node_retry` moment for each retry, as locally (Ray's own, silent `max_retries` is not used:
it would hide the retries from the record). An actor that dies takes its calls in flight with
it: each is a failed attempt whose worker died; Ray restarts the actor (`max_restarts=-1`) and
the retries go to the pool again. A timeout cancels the attempt's task (`ray.cancel(force=True)`:
a running Python call cannot be interrupted otherwise) or its actor call (`ray.cancel`, which
cancels the call's asyncio task: Ray refuses `force` for actor calls, and killing the actor
would end every other agent on it).

What differs from `LocalRuntime`, by necessity: the moments inside a node (model and tool calls,
streamed chunks) reach the hooks when the node's attempt ends, not as they happen; a budget is
checked in the worker against its usage when the attempt began plus the attempt's own calls;
nodes of one run do not share process state (a `ScriptedModel` list script is consumed per
copy: script agents with dicts or callables, or one reply list per agent).
"""

from kaizen.runtime.ray.runtime import RayRuntime

__all__ = ["RayRuntime"]
