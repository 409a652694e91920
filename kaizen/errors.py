"""The exceptions a Kaizen user handles, in one place (a few module-specific ones live with their
module: `LocalModelError` in `kaizen.llm.embedded`, `ScriptError` in `kaizen.testing`, `CliError`
in `kaizen.cli.support`).

All derive from `KaizenError`. Each message names what failed (node, field, port) and says what to
do about it; structured attributes carry the same facts for programs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class KaizenError(Exception):
    """Base class of every Kaizen error."""

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled with its attributes, without calling __init__ again (most take keyword-only
        # arguments): errors travel back from other processes (a Ray worker) whole
        return (_restore, (type(self), self.args, self.__dict__))


def _restore(cls: type[KaizenError], args: tuple[Any, ...], state: dict[str, Any]) -> KaizenError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class SignatureError(KaizenError, ValueError):
    """A signature spec is malformed. `field` names the culprit, `position` the offset in `spec`."""

    def __init__(
        self,
        message: str,
        *,
        spec: str | None = None,
        position: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.spec = spec
        self.position = position
        self.field = field
        super().__init__(self._render())

    def _render(self) -> str:
        text = self.message
        if self.spec is not None and self.position is not None:
            caret = " " * self.position + "^"
            text = f"{text}\n  {self.spec}\n  {caret}"
        return text


class OutputParseError(KaizenError, ValueError):
    """A model reply could not be turned into the signature's typed outputs.

    `raw` is the reply exactly as received; `errors` lists every problem as
    `(field or None, message)`. `str(err)` is worded to be sent back to the model as a correction.
    """

    def __init__(self, message: str, *, raw: str, errors: Sequence[tuple[str | None, str]]) -> None:
        self.raw = raw
        self.errors = list(errors)
        super().__init__(message)


class InputValidationError(KaizenError, ValueError):
    """Inputs given to an agent or signature are missing, unexpected or of the wrong type.

    `errors` lists `(field, message)` for every problem found.
    """

    def __init__(self, message: str, *, errors: Sequence[tuple[str, str]] = ()) -> None:
        self.errors = list(errors)
        super().__init__(message)


class InputGuardError(InputValidationError):
    """An input broke one of the agent's ``input_guards`` (a size limit or a denied pattern).

    `field` is the first failing input, `errors` lists `(field, why)` for each; `agent` names
    the agent. The value itself is never shown. Raised before any model call.
    """

    def __init__(
        self, message: str, *, errors: Sequence[tuple[str, str]] = (), agent: str = ""
    ) -> None:
        super().__init__(message, errors=errors)
        self.agent = agent
        self.field = self.errors[0][0] if self.errors else ""


class WorkflowValidationError(KaizenError, ValueError):
    """`WorkflowBuilder.build()` found problems; `problems` lists every one of them."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"workflow is invalid ({len(self.problems)} problem(s)):\n{lines}")


class ParameterError(KaizenError, ValueError):
    """Run parameters do not fit the workflow (unknown node, unused parameter, bad value)."""


class NodeExecutionError(KaizenError):
    """A node failed. The original exception is chained as `__cause__`.

    Raised by a runtime under `failure_policy="fail_fast"`, it also carries the run: `run_id`
    and `results` (what the nodes that completed produced), so nothing already done is lost.
    """

    def __init__(self, node_id: str, attempt: int, message: str) -> None:
        self.node_id = node_id
        self.attempt = attempt
        self.run_id: str | None = None
        self.results: dict[str, dict[str, Any]] = {}
        super().__init__(f"node {node_id!r} failed on attempt {attempt}: {message}")


class NodeCancelledError(KaizenError):
    """A node was stopped while it ran: the run failed fast after another node's failure, or the
    run itself was cancelled (Ctrl-C, a cancelled task). Recorded, never raised to callers."""


class NotPicklableError(KaizenError, TypeError):
    """A value cannot travel to or from another process (a Ray worker): it cannot be pickled.

    `node_id` names the node; `port` the input or output port whose value it is (None when it is
    the node itself: its function, agent, model or tools); `direction` is "input", "output" or
    "node"; `type_name` the value's type."""

    def __init__(
        self, message: str, *, node_id: str, port: str | None, direction: str, type_name: str,
    ) -> None:  # fmt: skip
        self.node_id = node_id
        self.port = port
        self.direction = direction
        self.type_name = type_name
        super().__init__(message)


class ModelError(KaizenError):
    """A model provider call failed for good (after retries, or not retryable)."""

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status: int | None = None,
        retryable: bool = False,
        attempts: int = 1,
    ) -> None:
        self.provider = provider
        self.status = status
        self.retryable = retryable
        self.attempts = attempts
        super().__init__(message)


class CircuitOpenError(ModelError):
    """A model's circuit breaker is open: calls to `model` fail at once until `until` (a
    `time.time()` stamp), when one probe call is let through (see docs/production.md)."""

    def __init__(self, message: str, *, model: str, until: float, provider: str | None = None):
        self.model = model
        self.until = until
        super().__init__(message, provider=provider, retryable=False, attempts=0)


class ApprovalRequired(KaizenError):
    """An access policy requires approval before agent `agent` runs (node `node_id` of run
    `run_id`); `approver` says whose. A checkpointed workflow run waits (status
    ``waiting_approval``) until `kaizen approve RUN NODE --by NAME` or `kaizen.approve(...)`."""

    def __init__(
        self, message: str, *, agent: str, approver: str, node_id: str = "", run_id: str = ""
    ) -> None:
        self.agent = agent
        self.approver = approver
        self.node_id = node_id
        self.run_id = run_id
        super().__init__(message)


class AgentWaitingError(KaizenError):
    """Agent `agent` paused for a person (config ``on_interrupt="raise"``): `interrupts` says
    what it asks (a tool and its arguments, for an approval); `result` is the waiting
    `ExecutionResult`, which `agent.resume(error.result, answers)` finishes."""

    def __init__(self, message: str, *, agent: str, interrupts: Sequence[Any], result: Any) -> None:
        self.agent = agent
        self.interrupts = list(interrupts)
        self.result = result
        super().__init__(message)


class AccessDeniedError(KaizenError):
    """An access policy refused to let agent `agent` run; `reason` says why."""

    def __init__(self, message: str, *, agent: str, reason: str) -> None:
        self.agent = agent
        self.reason = reason
        super().__init__(message)


class AuditChainError(KaizenError):
    """An audit log's hash chain is broken at `line` (an entry edited, deleted or reordered)."""

    def __init__(self, message: str, *, line: int) -> None:
        self.line = line
        super().__init__(message)


class ConfigError(KaizenError, ValueError):
    """Agent or framework configuration is invalid (unknown key, value out of range, no model)."""


class VetoError(KaizenError):
    """Raised by a lifecycle hook to refuse a model or tool call (see `kaizen.runtime.hooks`):
    the call does not happen and the node sees this error."""


class BudgetExceededError(VetoError):
    """A token or cost ceiling was reached; no further model calls start.

    Raised before a model call by the budget's hook. Under `failure_policy="fail_fast"` the
    runtime stops the run and raises it with `run_id`, `node_id` (the node refused) and `results`
    (what completed); under `"continue"` the refused nodes are SKIPPED and the run goes on.
    """

    def __init__(self, message: str, *, limit: str, used: Any, ceiling: Any) -> None:
        self.limit = limit
        self.used = used
        self.ceiling = ceiling
        self.run_id: str | None = None
        self.node_id: str | None = None
        self.results: dict[str, dict[str, Any]] = {}
        super().__init__(message)


class UnknownNodeTypeError(KaizenError, LookupError):
    """No node type is registered under `name`; `suggestions` lists registered names like it."""

    def __init__(self, name: str, suggestions: Sequence[str] = ()) -> None:
        self.name = name
        self.suggestions = list(suggestions)
        hint = f"; did you mean {', '.join(map(repr, self.suggestions))}?" if suggestions else ""
        super().__init__(
            f"unknown node type {name!r}{hint} (register your own with "
            "kaizen.nodes.register_node_type or the @node decorator)"
        )


class AgentLimitError(KaizenError):
    """An agent's reason-act loop stopped before it completed: `stop_reason` says why
    ("max_iterations", "loop_detected", "budget", "error"); `trajectory` holds the conversation
    so far and `tool_calls` every tool call made (`ToolCallRecord`), so no work is lost."""

    def __init__(
        self,
        message: str,
        *,
        agent: str,
        stop_reason: str,
        trajectory: Sequence[Any] = (),
        tool_calls: Sequence[Any] = (),
    ) -> None:
        self.agent = agent
        self.stop_reason = stop_reason
        self.trajectory = list(trajectory)
        self.tool_calls = list(tool_calls)
        super().__init__(message)


class PlanError(KaizenError):
    """A plan (`kaizen.compile_plan`) that cannot run: `problems` lists every one (unknown tools,
    arguments that do not fit a tool, references to missing steps, cycles)."""

    def __init__(self, message: str, *, problems: Sequence[str] = ()) -> None:
        self.problems = list(problems)
        super().__init__(message)


class PlanStepError(PlanError):
    """A step of a running plan failed: `step` is its id, `outcome` says how it ended:
    "failed" (its tool failed and recovery was used up or absent), "gave_up" (the recovery
    decision was `fail`: the whole execution stops), or "check" (its result did not match its
    expected_output). The planning agent re-plans after "failed" and "check"."""

    def __init__(self, message: str, *, step: str, outcome: str) -> None:
        self.step = step
        self.outcome = outcome
        super().__init__(message, problems=[message])


class RenderError(KaizenError):
    """A picture could not be drawn: an unsupported file suffix, or Graphviz's `dot` is missing."""


class StoreError(KaizenError):
    """The embedded store (`kaizen.store`) could not do what was asked; `path` is its file.
    Whatever it held before the failing operation is still there."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(message)


class StoreCorruptedError(StoreError):
    """The store file is not a SQLite database Kaizen can read (damaged, or another file)."""


class StoreLockedError(StoreError):
    """Another process or thread held the store's write lock for longer than the busy timeout."""


class StoreUnavailableError(StoreError, ConnectionError):
    """The store's server could not be reached or refused the login (a wrong URL, host, port,
    user, password or database; the server down), the pool had no free connection in time, or
    the connection was lost where Kaizen could not safely retry."""


class StorePermissionError(StoreError, PermissionError):
    """The store's database role lacks a permission the schema or an operation needs."""


class StoreFullError(StoreError):
    """A write to the store failed for lack of space (disk full, or the file could not grow)."""


class EncodeError(StoreError, TypeError):
    """A value cannot be stored: `node_id` and `port` name where it came from (None for values
    that belong to no node), `type_name` its type."""

    def __init__(
        self, message: str, *, node_id: str | None = None, port: str | None = None,
        type_name: str = "",
    ) -> None:  # fmt: skip
        self.node_id = node_id
        self.port = port
        self.type_name = type_name
        super().__init__(message)


class RunNotFoundError(StoreError, LookupError):
    """No run with this id in the store (never checkpointed or recorded there, or pruned)."""


class WorkflowChangedError(StoreError):
    """`resume` or `replay` was given a workflow that differs from the run's; `differences`
    lists what changed (node ids, types, configs, connections)."""

    def __init__(self, message: str, *, differences: Sequence[str] = ()) -> None:
        self.differences = list(differences)
        super().__init__(message)


class ReplayMismatchError(StoreError):
    """During a replay, a node made a model or tool call the recording does not hold.
    `node_id` names the node, `diff` shows how the request differs from the closest recorded
    one (empty when the node recorded nothing like it)."""

    def __init__(self, message: str, *, node_id: str, diff: str = "") -> None:
        self.node_id = node_id
        self.diff = diff
        super().__init__(message)


class InterruptError(StoreError):
    """A resume could not be taken as given; nothing stored changed. `run_id` names the run."""

    def __init__(self, message: str, *, run_id: str, path: str | None = None) -> None:
        self.run_id = run_id
        super().__init__(message, path=path)


class UnknownInterruptError(InterruptError, LookupError):
    """An answer names interrupt `interrupt_id`, which run `run_id` never asked; `open` lists
    the ids still waiting for an answer."""

    def __init__(
        self, message: str, *, run_id: str, interrupt_id: str, open: Sequence[str] = (),
        path: str | None = None,
    ) -> None:  # fmt: skip
        self.interrupt_id = interrupt_id
        self.open = list(open)
        super().__init__(message, run_id=run_id, path=path)


class InterruptAnswerError(InterruptError, ValueError):
    """The answer to interrupt `interrupt_id` does not match the schema the node gave
    (`interrupt(payload, schema=...)`); `problem` says where and how."""

    def __init__(
        self, message: str, *, run_id: str, interrupt_id: str, problem: str,
        path: str | None = None,
    ) -> None:  # fmt: skip
        self.interrupt_id = interrupt_id
        self.problem = problem
        super().__init__(message, run_id=run_id, path=path)


class RunNotWaitingError(InterruptError):
    """Run `run_id` waits for no answer: it finished, was cancelled, or another resume took it
    first (a double resume); `status` is what the store says it is."""

    def __init__(self, message: str, *, run_id: str, status: str, path: str | None = None) -> None:
        self.status = status
        super().__init__(message, run_id=run_id, path=path)


__all__ = [
    "AccessDeniedError",
    "AgentLimitError",
    "AgentWaitingError",
    "ApprovalRequired",
    "AuditChainError",
    "BudgetExceededError",
    "CircuitOpenError",
    "ConfigError",
    "EncodeError",
    "InputValidationError",
    "InterruptAnswerError",
    "InterruptError",
    "KaizenError",
    "ModelError",
    "NodeCancelledError",
    "NodeExecutionError",
    "OutputParseError",
    "ParameterError",
    "PlanError",
    "PlanStepError",
    "RenderError",
    "ReplayMismatchError",
    "RunConflictError",
    "RunNotFoundError",
    "RunNotWaitingError",
    "SignatureError",
    "StoreCorruptedError",
    "StoreError",
    "StoreFullError",
    "StoreLockedError",
    "StorePermissionError",
    "StoreUnavailableError",
    "UnknownInterruptError",
    "UnknownNodeTypeError",
    "VetoError",
    "WorkflowChangedError",
    "WorkflowValidationError",
]


class RunConflictError(KaizenError):
    """What was asked of a served run does not fit its state (resume a run that did not fail;
    `kaizen serve` answers 409)."""
