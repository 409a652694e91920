"""The live display of a run on a terminal, as lifecycle hooks.

`RunProgress` (`kaizen run`, `kaizen demo`): a rich progress bar counting settled nodes
(completed, failed, cancelled or skipped) out of all of them, with the nodes running now and the
tail of the text each is streaming; a line per tool call as it ends; optionally one line per node
as it settles. `AskDisplay` (`kaizen ask`): the reply's text as it streams and a line per tool
call. Registered for one run: `runtime.execute(workflow, hooks=[progress])`. Node moments
arrive on the driver thread in order; chunk and tool moments from the threads running nodes
(rich's console and progress are thread-safe).
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

from kaizen.moments import (
    ChunkReceived,
    NodeFinished,
    NodeRetrying,
    NodeSkipped,
    NodeStarted,
    RunFinished,
    ToolCallFinished,
    ToolCallStarted,
)
from kaizen.runtime.hooks import (
    ChunkHook,
    NodeFinishHook,
    NodeRetryHook,
    NodeSkipHook,
    NodeStartHook,
    RunFinishHook,
    ToolCallFinishHook,
    ToolCallStartHook,
)
from kaizen.runtime.record import NodeStatus, RunStatus, ToolCallRecord
from kaizen.text import shorten

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from kaizen.workflow.workflow import Workflow

__all__ = ["AskDisplay", "RunProgress", "tool_line"]

_SHOWN = 4  # running nodes named in the bar's description
_TAIL = 40  # characters of a node's streamed text shown beside its name
_STATUS_STYLE = {
    NodeStatus.COMPLETED: "[green]done[/green]     ",
    NodeStatus.FAILED: "[red]failed[/red]   ",
    NodeStatus.CANCELLED: "[yellow]cancelled[/yellow]",
    NodeStatus.SKIPPED: "[yellow]skipped[/yellow]  ",
}


def tool_line(record: ToolCallRecord, node_id: str | None = None) -> str:
    """One line (rich markup) for a finished tool call."""
    from rich.markup import escape

    where = f"{escape(node_id)}: " if node_id else ""
    arguments = record.arguments
    if isinstance(arguments, dict):
        shown = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
    else:
        shown = str(arguments)
    call = escape(f"{record.name}({shorten(shown, 60)})")
    took = f"[dim]{record.duration:.2f}s[/dim]"
    if record.error is not None:
        return (
            f"  [red]✗[/red] {where}{call} {took} [red]{escape(shorten(record.error, 100))}[/red]"
        )
    return f"  [cyan]⚙[/cyan] {where}{call} {took} → {escape(shorten(record.output or '', 80))}"


class RunProgress(
    NodeStartHook,
    NodeRetryHook,
    NodeFinishHook,
    NodeSkipHook,
    RunFinishHook,
    ChunkHook,
    ToolCallFinishHook,
):
    """Shows a run's progress on `console` (default: stderr). Use as a context manager around
    the run, and give it to the run as a hook. `lines`: also print one line per settled node."""

    name = "kaizen.progress"

    def __init__(
        self,
        workflow: Workflow,
        console: Console | None = None,
        *,
        lines: bool = False,
        enabled: bool = True,
    ) -> None:
        self.total = len(workflow.nodes)
        self.console = console
        self.lines = lines
        self.enabled = enabled
        self.running: list[str] = []
        self.streamed: dict[str, str] = {}  # node id -> the tail of the text it streams
        self.failed = 0
        self._progress: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def _bar(self) -> Progress:
        """The bar, shown on the first moment (a run refused up front draws no empty bar)."""
        if self._progress is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                SpinnerColumn(),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
                console=self.console or Console(stderr=True),
            )
            self._progress.start()
            self._task = self._progress.add_task("starting", total=self.total)
        return self._progress

    def _show(self, *, advance: int = 0, note: str | None = None) -> None:

        bar = self._bar()
        if note is None:
            names = ", ".join(self._running_name(n) for n in self.running[:_SHOWN])
            more = " …" if len(self.running) > _SHOWN else ""
            failed = f"[red]{self.failed} failed[/red] " if self.failed else ""
            note = f"{failed}{names}{more}"
        bar.update(self._task, advance=advance, description=note)

    def _running_name(self, node_id: str) -> str:
        from rich.markup import escape

        tail = self.streamed.get(node_id)
        if not tail:
            return escape(node_id)
        return f"{escape(node_id)} [dim]…{escape(' '.join(tail.split()))}[/dim]"

    def _settled(self, node_id: str, status: NodeStatus, detail: str) -> None:
        self.streamed.pop(node_id, None)
        if node_id in self.running:
            self.running.remove(node_id)
        self.failed += status is NodeStatus.FAILED
        self._show(advance=1)
        if self.lines:
            from rich.markup import escape

            line = f"{_STATUS_STYLE[status]} {escape(node_id)}"
            if detail and status is NodeStatus.COMPLETED:
                line += f" [dim]{detail}[/dim]"
            elif detail:
                line += f": {escape(shorten(detail, 100))}"
            self._bar().console.print(line)

    # -- moments ---------------------------------------------------------------------------------

    def on_node_start(self, event: NodeStarted) -> None:
        if self.enabled:
            self.running.append(event.node_id)
            self._show()

    def on_node_retry(self, event: NodeRetrying) -> None:
        if self.enabled:
            self._show(note=f"{event.node_id} (retry {event.attempt + 1})")

    def on_node_finish(self, event: NodeFinished) -> None:
        if not self.enabled:
            return
        error, duration = event.error, event.duration
        if error is not None:
            detail = f"{type(error).__name__}: {error}"
        else:
            detail = "" if duration is None else f"{duration:.1f}s"
        self._settled(event.node_id, event.status, detail)

    def on_node_skip(self, event: NodeSkipped) -> None:
        if self.enabled:
            self._settled(event.node_id, NodeStatus.SKIPPED, event.reason)

    def on_chunk(self, event: ChunkReceived) -> None:
        if self.enabled:
            node_id = event.node_id
            self.streamed[node_id] = (self.streamed.get(node_id, "") + event.chunk)[-_TAIL:]
            self._show()

    def on_tool_call_finish(self, event: ToolCallFinished) -> None:
        if self.enabled:
            self._bar().console.print(tool_line(event.record, event.node_id))

    def on_run_finish(self, event: RunFinished) -> None:
        if self.enabled:
            status = event.status
            self._show(note="done" if status is RunStatus.COMPLETED else str(status))


class AskDisplay(ChunkHook, ToolCallStartHook, ToolCallFinishHook):
    """`kaizen ask`'s live view on `console` (default: stderr): the model's text as it streams,
    a line per tool call."""

    name = "kaizen.ask-display"

    def __init__(self, console: Console | None = None) -> None:
        if console is None:
            from rich.console import Console

            console = Console(stderr=True)
        self.console = console
        self._mid_line = False

    def on_chunk(self, event: ChunkReceived) -> None:
        self.console.print(event.chunk, end="", style="dim", markup=False, highlight=False)
        self._mid_line = True

    def on_tool_call_start(self, event: ToolCallStarted) -> None:
        self._end_line()

    def on_tool_call_finish(self, event: ToolCallFinished) -> None:
        self._end_line()
        self.console.print(tool_line(event.record))

    def close(self) -> None:
        """End the streamed text's line, if one is open."""
        self._end_line()

    def _end_line(self) -> None:
        if self._mid_line:
            self.console.print()
            self._mid_line = False
