"""`Gathered`: the base of layer 4's hooks that gather evidence under a lock (the monitor, the
optimizer). What they gathered travels with their agent when it is pickled (to a worker
process, a Ray actor); their lock does not: the copy gets a new one.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["Gathered"]


class Gathered:
    """Holds `_lock`, made anew on unpickling; the rest of the instance's state is pickled."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
