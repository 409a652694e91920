"""Running the tool calls of one turn: concurrently, bounded, and never crashing the run.

`tool_calls` is the flow of one turn's calls, written once (`kaizen.flow`); `run_calls` drives
it sync (worker threads), `arun_calls` async (tasks), and an agent's loop yields from it. It
takes the calls a model asked for and returns one `ToolCallRecord` per call, in the order asked,
each holding either the output the model reads or the tool error it reads instead:

- arguments that are not JSON, an unknown tool name, arguments that do not fit the tool's
  parameters (each field named), a tool that raises (its own `TimeoutError` included: that is
  not the tool's `timeout`), one that runs past its `timeout`, and a
  return value that cannot be serialised: each is a tool error, worded for the model to act on;
- a lifecycle hook may refuse a call (`VetoError` from `on_tool_call_start`): a tool error too,
  except a `BudgetExceededError`, which propagates (the run's budget stops the agent);
- at most `max_concurrency` calls run at once (the runtime's bound);
- every call fires the tool-call moments of the hooks (`NodeContext.tool_call_started` /
  `tool_call_finished`), from the thread or task that runs the node;
- a run that records (`LocalRuntime(record=True)`) keeps each call's output, a replay serves it
  without running the tool, and tools declared `deterministic` are memoized
  (`kaizen.store.calls.tool_call_step`); what is kept is the text the model read.

`ToolBudget` counts failures per tool and per run; the counts only ever grow (a success never
resets them). The loop asks it after each turn whether a budget is used up.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kaizen.errors import BudgetExceededError, VetoError
from kaizen.flow import Call, Each, EffectTimeout, Flow, run_async, run_sync
from kaizen.runtime.record import ToolCallRecord
from kaizen.store.calls import ToolCallStep, tool_call_step
from kaizen.tools.tool import Tool, ToolArgumentError, ToolResultError, serialize_result

if TYPE_CHECKING:
    from kaizen.llm.transport import ToolCallRequest
    from kaizen.runtime.context import NodeContext

__all__ = ["ToolBudget", "arun_calls", "parse_arguments", "run_calls", "tool_calls"]


@dataclass
class ToolBudget:
    """Failed tool calls, counted per tool and for the whole run; never reset."""

    max_failures: int  # for the whole run, all tools together
    failures: dict[str, int] = field(default_factory=dict)
    total: int = 0

    def charge(self, records: Sequence[ToolCallRecord], tools: Mapping[str, Tool]) -> str | None:
        """Count the failed calls among `records`; say why a budget is used up, or None."""
        for record in records:
            if record.error is None:
                continue
            self.total += 1
            self.failures[record.name] = self.failures.get(record.name, 0) + 1
        for name, count in self.failures.items():
            found = tools.get(name)
            if found is not None and count > found.retries:
                return (
                    f"tool {name!r} failed {count} times, more than its {found.retries} allowed "
                    f"retries (raise them with kaizen.tool(retries=...)); last error: "
                    f"{_last_error(records, name)}"
                )
        if self.total > self.max_failures:
            return (
                f"{self.total} tool calls failed in this run, more than the "
                f"{self.max_failures} allowed (config 'max_tool_retries')"
            )
        return None


def _last_error(records: Sequence[ToolCallRecord], name: str) -> str:
    for record in reversed(records):
        if record.name == name and record.error:
            return record.error
    return "(earlier turn)"


def parse_arguments(text: str) -> Any:
    """A model's arguments: the parsed JSON object, or `ValueError` saying what is wrong."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"the arguments are not valid JSON ({exc.msg} at character {exc.pos}); send a JSON "
            "object of the tool's parameters"
        ) from None
    if not isinstance(value, dict):
        raise ValueError(
            f"the arguments must be a JSON object of the tool's parameters, not "
            f"{type(value).__name__}"
        )
    return value


@dataclass
class _Pending:
    """One call between asking and answering."""

    request: ToolCallRequest
    record: ToolCallRecord
    tool: Tool | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    clock: float = 0.0  # perf_counter at start
    step: ToolCallStep | None = None  # recording, replay, memo

    @property
    def runnable(self) -> bool:
        return self.tool is not None and self.record.error is None


def _begin(
    request: ToolCallRequest, tools: Mapping[str, Tool], context: NodeContext | None
) -> _Pending:
    """Check a call before it runs; a call that cannot run carries its error already."""
    record = ToolCallRecord(request.id, request.name, request.arguments, started=time.time())
    pending = _Pending(request, record, clock=time.perf_counter())
    try:
        parsed = parse_arguments(request.arguments)
        record.arguments = parsed
        found = tools.get(request.name)
        if found is None:
            names = ", ".join(sorted(tools)) or "(none)"
            raise ValueError(
                f"there is no tool named {request.name!r}; the tools are: {names}, and "
                "'complete' to finish"
            )
        pending.arguments = found.validate(parsed)
        pending.tool = found
    except (ValueError, ToolArgumentError) as exc:
        record.error = _error_text(request.name, exc)
    if context is not None:
        try:
            context.tool_call_started(
                tool=request.name, arguments=record.arguments, call_id=request.id
            )
        except BudgetExceededError:
            raise
        except VetoError as exc:
            record.error = f"tool {request.name!r} was refused: {exc}"
    return pending


def _served(pending: _Pending, context: NodeContext | None) -> bool:
    """Answer a call from the run's recording or the tool's memo when they hold it (True);
    a replay that lacks the call raises `ReplayMismatchError`, which stops the run."""
    tool = pending.tool
    if tool is None or not pending.runnable:
        return False
    step = pending.step = tool_call_step(
        tool.name, pending.arguments, deterministic=tool.deterministic
    )
    if step is None:
        return False
    memo = step.lookup()
    if not memo.hit:
        return False
    pending.step = None  # nothing new to keep
    _finish(pending, memo.value, None, context)
    return True


def _finish(
    pending: _Pending, value: Any, error: BaseException | None, context: NodeContext | None
) -> ToolCallRecord:
    record = pending.record
    if record.error is None:
        if error is not None:
            record.error = _error_text(record.name, error)
        else:
            try:
                record.output = serialize_result(record.name, value)
            except ToolResultError as exc:
                record.error = str(exc)
            else:
                if pending.step is not None:
                    pending.step.keep(record.output)
                    pending.step = None
    record.duration = time.perf_counter() - pending.clock
    if context is not None:
        context.tool_call_finished(record)
    return record


def _error_text(name: str, error: BaseException) -> str:
    if isinstance(error, ToolArgumentError):
        return f"{error}. Call {name!r} again with arguments that fit its parameters."
    if isinstance(error, ValueError) and not isinstance(error, ToolResultError):
        return f"tool {name!r}: {error}"
    if isinstance(error, EffectTimeout):
        return (
            f"tool {name!r} did not finish in time ({error}); try other arguments or another tool"
        )
    return f"tool {name!r} raised {type(error).__name__}: {error}"


def tool_calls(
    requests: Sequence[ToolCallRequest],
    tools: Mapping[str, Tool],
    *,
    context: NodeContext | None,
    max_concurrency: int,
) -> Flow[list[ToolCallRecord]]:
    """The flow of one turn's tool calls: every call checked, then the runnable ones run
    concurrently (`Each`), at most `max_concurrency` at once; the records in the order asked."""
    pendings = [_begin(request, tools, context) for request in requests]
    return (yield Each([_one_call(pending, context) for pending in pendings], max_concurrency))


def _one_call(pending: _Pending, context: NodeContext | None) -> Flow[ToolCallRecord]:
    """One call: answered from the recording or memo, or run within its tool's timeout; every
    way it can fail (its own `TimeoutError` too) becomes the record's error."""
    tool = pending.tool
    if tool is None or not pending.runnable:
        return _finish(pending, None, None, context)
    if _served(pending, context):
        return pending.record
    try:
        value = yield Call(
            tool.invoke, tool.ainvoke, {"arguments": pending.arguments}, timeout=tool.timeout
        )
    except Exception as exc:
        return _finish(pending, None, exc, context)
    return _finish(pending, value, None, context)


def run_calls(
    requests: Sequence[ToolCallRequest],
    tools: Mapping[str, Tool],
    *,
    context: NodeContext | None,
    max_concurrency: int,
) -> list[ToolCallRecord]:
    """`tool_calls` in this thread: sync tools run in worker threads (one call with no timeout
    runs right here)."""
    return run_sync(tool_calls(requests, tools, context=context, max_concurrency=max_concurrency))


async def arun_calls(
    requests: Sequence[ToolCallRequest],
    tools: Mapping[str, Tool],
    *,
    context: NodeContext | None,
    max_concurrency: int,
) -> list[ToolCallRecord]:
    """`tool_calls` on the running event loop (sync tools run in worker threads)."""
    return await run_async(
        tool_calls(requests, tools, context=context, max_concurrency=max_concurrency)
    )
