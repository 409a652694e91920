"""`ExecutionResult` (what `agent.execute()` returns) and `ExecutionReport` (the hook that
gathers, during that run, what the agent's model calls did).

As the ADR writes it: `result.answer` (any output field), `result.data`, `result.metadata`
(`execution_time`, `token_usage`, `cost`, ...), `result.success`, `result.error`; plus
`result.raw`, the model's final reply as received.
"""

from __future__ import annotations

import reprlib
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kaizen.moments import ModelCallFinished, NodeWaiting
from kaizen.runtime.hooks import ModelCallFinishHook, NodeWaitHook
from kaizen.runtime.record import ToolCallRecord, Usage

if TYPE_CHECKING:
    from kaizen.interrupts import Interrupt
    from kaizen.runtime.record import RunRecord
    from kaizen.workflow.workflow import Workflow

__all__ = ["ExecutionMetadata", "ExecutionReport", "ExecutionResult", "PausedAgent"]

_SHORT = reprlib.Repr()  # keeps a result's repr to a line or two
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxdict = 6


class ExecutionMetadata(dict[str, Any]):
    """A dict of facts about one execution, also readable as attributes
    (`result.metadata.execution_time` and `result.metadata["execution_time"]`)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"no metadata {name!r}; there is: {', '.join(self) or '(none)'}"
            ) from None


_ATTRIBUTES = (
    "data", "raw", "metadata", "success", "error", "stop_reason", "tool_calls", "plan", "run",
    "interrupts",
)  # fmt: skip


class ExecutionResult:
    """An agent's typed outputs (`result.answer`, `result["answer"]`), `.data`, `.raw`,
    `.metadata`, `.success` and `.error`; for an agent with tools also `.tool_calls` (each
    call's name, arguments, output or error, start and duration) and `.stop_reason` (why its
    loop stopped: "completed", "completed_after_reminder", "forced_completion", "extracted",
    "max_iterations", "loop_detected", "budget" or "error"). A planning agent (config
    ``strategy="plan"``) also has `.plan`, the `Workflow` its last plan compiled into (it
    renders like any graph), and `.run`, the `RunRecord` of that plan's run; its stop reasons
    add "completed_after_replan", "invalid_plan" and "step_failed" (docs/plans.md).

    An agent paused for a person (a tool that needs approval, a tool calling
    `kaizen.interrupt`) returns a result with ``stop_reason == "waiting"``, `success` False, no
    error, and `.interrupts` (each with the `id` to answer); `agent.resume(result, answers)`
    finishes it (docs/human-in-the-loop.md).

    An output field named like one of these attributes is reached with `result["data"]`. On a
    failed result (`success` False, only with the agent config `raise_on_error=False`) `data`
    is empty, `error` holds the exception, and reading an output field raises an
    `AttributeError` that says so.
    """

    __slots__ = (
        "data", "error", "interrupts", "metadata", "paused", "plan", "raw", "run", "stop_reason",
        "success", "tool_calls",
    )  # fmt: skip

    def __init__(
        self,
        data: dict[str, Any],
        *,
        raw: str,
        metadata: Mapping[str, Any],
        success: bool = True,
        error: BaseException | None = None,
        tool_calls: Iterable[ToolCallRecord] = (),
        stop_reason: str | None = None,
        plan: Workflow | None = None,
        run: RunRecord | None = None,
        interrupts: Iterable[Interrupt] = (),
        paused: PausedAgent | None = None,
    ) -> None:
        self.data = data
        self.interrupts: list[Interrupt] = list(interrupts)
        self.paused = paused  # what `agent.resume` continues from, for a waiting result
        self.plan = plan
        self.run = run
        self.raw = raw
        self.metadata = ExecutionMetadata(metadata)
        self.success = success
        self.error = error
        self.tool_calls: list[ToolCallRecord] = list(tool_calls)
        self.stop_reason = stop_reason or ("completed" if success else "error")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            data = object.__getattribute__(self, "data")
        except AttributeError:
            raise AttributeError(name) from None
        if name in data:
            return data[name]
        if object.__getattribute__(self, "stop_reason") == "waiting":
            asked = ", ".join(i.id for i in object.__getattribute__(self, "interrupts"))
            raise AttributeError(
                f"this execution waits for a person ({asked}), so it has no output {name!r} "
                "yet: answer with agent.resume(result, {interrupt_id: answer})"
            )
        error = object.__getattribute__(self, "error")
        if error is not None:
            raise AttributeError(
                f"this execution failed, so it has no output {name!r}: "
                f"{type(error).__name__}: {error} (see result.error)"
            ) from error
        fields = ", ".join(data) or "(none)"
        raise AttributeError(
            f"this result has no output field {name!r}; its outputs are: {fields} "
            "(plus .data, .raw, .metadata, .success, .error, .stop_reason, .tool_calls, .plan, "
            ".run)"
        )

    def __getitem__(self, name: str) -> Any:
        try:
            return self.data[name]
        except KeyError:
            raise KeyError(
                f"no output field {name!r}; outputs are: {', '.join(self.data) or '(none)'}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self.data

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __dir__(self) -> list[str]:
        return sorted({*self.data, *_ATTRIBUTES})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExecutionResult):
            return NotImplemented
        return (self.data, self.raw, self.success) == (other.data, other.raw, other.success)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if self.stop_reason == "waiting":
            asked = ", ".join(repr(i.id) for i in self.interrupts)
            return f"ExecutionResult(stop_reason='waiting', interrupts=[{asked}])"
        if not self.success:
            return f"ExecutionResult(success=False, error={self.error!r})"
        fields = ", ".join(f"{k}={_SHORT.repr(v)}" for k, v in self.data.items())
        return f"ExecutionResult({fields})"


@dataclass(frozen=True)
class PausedAgent:
    """What a waiting `agent.execute` leaves for `agent.resume`: the validated inputs, the
    answers given so far (by interrupt index), and the state the paused loop saved."""

    inputs: Mapping[str, Any]
    answers: Mapping[int, Any]
    state: Any
    asynchronous: bool


class ExecutionReport(ModelCallFinishHook, NodeWaitHook):
    """During one `agent.execute()` run: what the agent's model calls did (a hook)."""

    name = "kaizen.execution-report"

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.usage = Usage()
        self.latency = 0.0  # seconds in model calls, re-asks included
        self.attempts = 0  # model calls made to get a reply that fits the signature
        self.provider_attempts = 0  # HTTP-level attempts, provider retries included
        self.raw = ""
        self.model = ""
        self.finish_reason: str | None = None
        self.fallbacks: tuple[tuple[str, str], ...] = ()
        self.waiting: NodeWaiting | None = None  # the agent paused for a person
        self._lock = threading.Lock()

    def on_node_wait(self, event: NodeWaiting) -> None:
        if event.node_id == self.node_id:
            self.waiting = event

    def on_model_call_finish(self, event: ModelCallFinished) -> None:
        if event.node_id != self.node_id:
            return
        reply = event.reply
        with self._lock:
            self.attempts += 1
            self.usage.add(event.usage)
            self.latency += event.latency
            self.model = event.model or self.model
            if reply is not None:
                self.provider_attempts += reply.attempts
                self.raw = reply.text
                self.finish_reason = reply.finish_reason
                self.fallbacks = reply.fallbacks

    def metadata(self, agent: str, run_id: str, execution_time: float) -> dict[str, Any]:
        usage = self.usage
        return {
            "agent": agent,
            "model": self.model,
            "execution_time": execution_time,
            "token_usage": {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
            },
            "cost": usage.cost,
            "latency": self.latency,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "attempts": self.attempts,
            "provider_attempts": self.provider_attempts,
            "finish_reason": self.finish_reason,
            # the models tried before `model` answered, and why each did not
            "fallbacks": [{"model": model, "reason": why} for model, why in self.fallbacks],
            "run_id": run_id,
        }
