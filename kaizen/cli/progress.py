"""`RunProgress`: the live display of a run on a terminal, as a lifecycle hook.

A rich progress bar counting settled nodes (completed, failed, cancelled or skipped) out of all
of them, with the nodes running now; optionally one line per node as it settles (`kaizen demo`).
Registered for one run: `runtime.execute(workflow, hooks=[progress])`. Its moments arrive on the
driver thread, in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from kaizen.runtime.hooks import (
    NodeFinishHook,
    NodeRetryHook,
    NodeSkipHook,
    NodeStartHook,
    RunFinishHook,
)
from kaizen.runtime.record import NodeStatus, RunRecord, RunStatus
from kaizen.text import shorten

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from kaizen.workflow.workflow import Workflow

__all__ = ["RunProgress"]

_SHOWN = 4  # running nodes named in the bar's description
_STATUS_STYLE = {
    NodeStatus.COMPLETED: "[green]done[/green]     ",
    NodeStatus.FAILED: "[red]failed[/red]   ",
    NodeStatus.CANCELLED: "[yellow]cancelled[/yellow]",
    NodeStatus.SKIPPED: "[yellow]skipped[/yellow]  ",
}


class RunProgress(NodeStartHook, NodeRetryHook, NodeFinishHook, NodeSkipHook, RunFinishHook):
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
        from rich.markup import escape

        bar = self._bar()
        if note is None:
            names = ", ".join(escape(n) for n in self.running[:_SHOWN])
            more = " …" if len(self.running) > _SHOWN else ""
            failed = f"[red]{self.failed} failed[/red] " if self.failed else ""
            note = f"{failed}{names}{more}"
        bar.update(self._task, advance=advance, description=note)

    def _settled(self, node_id: str, status: NodeStatus, detail: str) -> None:
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

    def on_node_start(
        self, *, run_id: str, node_id: str, node_type: str, attempt: int, time: float
    ) -> None:
        if self.enabled:
            self.running.append(node_id)
            self._show()

    def on_node_retry(
        self, *, run_id: str, node_id: str, attempt: int, error: BaseException, wait: float
    ) -> None:
        if self.enabled:
            self._show(note=f"{node_id} (retry {attempt + 1})")

    def on_node_finish(
        self,
        *,
        run_id: str,
        node_id: str,
        status: NodeStatus,
        outputs: Mapping[str, Any] | None,
        error: BaseException | None,
        started: float | None,
        finished: float,
        attempts: int,
    ) -> None:
        if not self.enabled:
            return
        if error is not None:
            detail = f"{type(error).__name__}: {error}"
        else:
            detail = "" if started is None else f"{finished - started:.1f}s"
        self._settled(node_id, status, detail)

    def on_node_skip(self, *, run_id: str, node_id: str, reason: str, time: float) -> None:
        if self.enabled:
            self._settled(node_id, NodeStatus.SKIPPED, reason)

    def on_run_finish(
        self,
        *,
        run_id: str,
        status: RunStatus,
        record: RunRecord,
        error: BaseException | None,
    ) -> None:
        if self.enabled:
            self._show(note="done" if status is RunStatus.COMPLETED else str(status))
