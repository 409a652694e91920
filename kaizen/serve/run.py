"""`ServedRun`: one run a `kaizen serve` process holds, as the loop's thread sees it.

Its status, results and error, its live `RunRecord` while it runs (the record as JSON once it
ended), its numbered events as ``(id, kind, JSON)``, and an `asyncio.Event` that a stream
waits on (`changed`, replaced at each `notify`). Only the loop's thread touches it
(`kaizen.serve.runs.RunManager`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kaizen.store.served import FINISHED_STATUSES

if TYPE_CHECKING:
    from kaizen.runtime.record import RunRecord

__all__ = ["ServedRun"]


@dataclass(eq=False)
class ServedRun:
    """One run this process started: its status, results and numbered events."""

    run_id: str
    parameters: dict[str, Any]
    status: str = "queued"
    created: float = field(default_factory=time.time)
    finished: float | None = None
    results: Any = None
    error: str | None = None
    record: RunRecord | None = None
    record_data: dict[str, Any] | None = None  # the record as JSON, once the run ended
    events: list[tuple[int, str, str]] = field(default_factory=list)  # (id, kind, JSON)
    task: asyncio.Task[None] | None = None
    stored: bool = False  # every row of the finished run is committed
    lost: bool = False  # another worker took it over (its lease expired): no more writes
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    def record_dict(self) -> dict[str, Any] | None:
        if self.record_data is not None:
            return self.record_data
        return None if self.record is None else self.record.to_dict()

    def changed(self) -> asyncio.Event:
        """An event set at the next change (a new event, the end)."""
        return self._changed

    def notify(self) -> None:
        """Wake whoever waits on `changed()`."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
