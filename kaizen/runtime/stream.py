"""Streaming: typed events of a running agent or workflow, as they happen.

    async for event in agent.stream(question="..."):      # or: for event in agent.stream_sync(...)
        match event:
            case ContentDelta(text=text): print(text, end="")
            case ToolStart(name=name, arguments=arguments): ...
            case ToolComplete(call_id=call_id, output=output, error=error, duration=duration): ...
            case Done(result=result): ...                  # the ExecutionResult
            case Failed(error=error): ...                  # what execute() would have raised

The events are the lifecycle moments themselves (`kaizen.moments`; `StreamHook` hands on chunks
and tool-call starts and finishes): `ContentDelta` is `ChunkReceived`, `ToolStart` is
`ToolCallStarted`, `ToolComplete` is `ToolCallFinished`, so a stream sees exactly what hooks
and the run record see. Every event carries the `node_id` it came from (for an
agent, the agent's name): `LocalRuntime.stream(workflow, parameters)` yields the events of every
node of a workflow, then `Done` with the results (`Done.result`, `Done.run_id`).

Model calls stream only when a stream (or another `ChunkHook`) listens; tool-call fragments are
assembled by index before a `ToolStart` is sent, so a tool call is never dropped because text
came first.

`Failed` was called `Error` (a name that read as an exception class): `Error` stays as an alias
of it for one release, deprecated.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kaizen.moments import ChunkReceived, Moment, ToolCallFinished, ToolCallStarted
from kaizen.runtime.hooks import MomentHook

__all__ = [
    "ContentDelta",
    "Done",
    "Error",
    "Failed",
    "StreamEvent",
    "StreamHook",
    "ToolComplete",
    "ToolStart",
    "stream_async",
    "stream_sync",
]

# The stream's events are the moments themselves (`kaizen.moments`), under the stream's names.
ContentDelta = ChunkReceived  # .text (.chunk), .node_id, .run_id
ToolStart = ToolCallStarted  # .name (.tool), .arguments, .call_id, .node_id, .run_id
ToolComplete = ToolCallFinished  # .call_id, .output, .error, .duration, .name, .record, ...


@dataclass(frozen=True, slots=True)
class Done:
    """The end: an agent's `ExecutionResult`, or a workflow's results by node id."""

    result: Any
    node_id: str | None = None
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """The end of a run that failed with `error` (what `execute` would have raised). An event,
    not an exception: the stream yields it last."""

    error: BaseException
    node_id: str | None = None


Error = Failed  # the old name, deprecated (see the module docstring)


StreamEvent = ChunkReceived | ToolCallStarted | ToolCallFinished | Done | Failed
Sink = Callable[[StreamEvent], None]
_STREAMED = (ChunkReceived, ToolCallStarted, ToolCallFinished)


class StreamHook(MomentHook):
    """Hands chunk and tool-call moments to `sink` (thread-safe sinks only: moments come from
    the threads that run nodes). With `chunks=False`, tool calls only: no hook listening to
    chunks means model calls need not stream."""

    name = "kaizen.stream"

    def __init__(self, sink: Sink, *, chunks: bool = True) -> None:
        self.sink = sink
        self.moments = _STREAMED if chunks else _STREAMED[1:]

    def hears(self, moment: type[Moment]) -> bool:
        return moment in self.moments

    def on_moment(self, event: Moment) -> None:
        self.sink(event)  # type: ignore[arg-type] # one of the moments it hears


async def stream_async(
    start: Callable[[StreamHook], Awaitable[StreamEvent]],
) -> AsyncIterator[StreamEvent]:
    """The events of `start(hook)` (a coroutine running the work with `hook` registered and
    returning the final `Done` or `Failed`), as they happen. Closing the iterator early cancels
    the work."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[StreamEvent | None] = asyncio.Queue()  # None: nothing more

    def sink(event: StreamEvent) -> None:
        loop.call_soon_threadsafe(events.put_nowait, event)

    async def work() -> None:
        try:
            final = await start(StreamHook(sink))
        except Exception as exc:  # what the caller would have seen from execute
            final = Failed(exc)
        sink(final)  # after every event the work's hooks sent, in order
        loop.call_soon_threadsafe(events.put_nowait, None)

    task = asyncio.ensure_future(work())
    try:
        while (event := await events.get()) is not None:
            yield event
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def stream_sync(start: Callable[[StreamHook], StreamEvent]) -> Iterator[StreamEvent]:
    """`stream_async` for sync code: the work runs in a thread, events arrive here as they
    happen. Leaving the loop early lets the work finish in the background."""
    events: queue.SimpleQueue[StreamEvent | None] = queue.SimpleQueue()

    def work() -> None:
        try:
            final = start(StreamHook(events.put))
        except Exception as exc:
            final = Failed(exc)
        events.put(final)
        events.put(None)

    threading.Thread(target=work, name="kaizen-stream", daemon=True).start()
    while True:
        event = events.get()
        if event is None:
            return
        yield event
