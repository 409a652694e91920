"""The process-wide state, behind one owner: `reset()` forgets all of it in one call, and a
forked child starts with none of its parent's.

Most state belongs to a run (its record, hooks, calls) or to a runtime (its pool, store,
records). Some belongs to the process, kept by the module that uses it, and each of those
modules registers here how to forget it (`register(name, reset)`):

- `llm.resilience`: circuit breakers and rate limiters per model;
- `llm.openai_compat`: the fast path's endpoints; `llm.http.session`: the aiohttp session of
  each event loop (after a fork only);
- `llm.embedded`: the embedded model and its batch engine (after a fork only: reloading it takes
  seconds, and a test never needs it gone);
- `store.db`: the open stores, one per file; `store.writer`: their writer threads;
  `store.calls`: the in-memory level of the model-call cache;
- `runtime.hooks`: the process hooks (`add_process_hook`);
- `flow`, `mcp.loop`, `mcp.session`: the flows' worker threads, the MCP loop and its sessions
  (after a fork only: the threads are not in the child);
- `agents.facade`: the default `Kaizen` instance behind `kaizen.create_agent`.

The `ScriptedModel` registry (`kaizen.testing.scripted`) is not reset: it is weak (a model is in
it while the model lives), and a model made at a test module's top serves all of its tests.

Definitions are not state and are never reset: node types (`kaizen.nodes.registry`), signature
types (`kaizen.signatures.fieldtypes`), model providers (`kaizen.llm.litellm_adapter`), the
seams (`kaizen.seams`); nor are pure caches (workflow fingerprints, token prices).

`reset()` is what a test calls between tests (tests/conftest.py does, around every test). In
a child made by `os.fork()` (multiprocessing's fork start method), `reset(after_fork=True)` runs
before anything else, so the child never talks through its parent's sockets, waits on its
parent's threads or writes through its parent's SQLite connections. A second `LocalRuntime`
shares none of this by accident either: its worker pool, records and store are its own (a store
is shared only with another runtime given the same file).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ProcessState", "generation", "names", "register", "reset", "state"]

_log = logging.getLogger("kaizen.process")


@dataclass(frozen=True, slots=True)
class _Entry:
    reset: Callable[[], None]
    fork_only: bool


class ProcessState:
    """The owner of the process-wide state (one per process: `state`)."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def register(self, name: str, reset: Callable[[], None], *, fork_only: bool = False) -> None:
        """`reset()` forgets the state called `name` (``"llm.resilience"``); `fork_only`: only
        in a forked child, never in `reset()`. Registering a name again replaces it (a module
        reloaded)."""
        with self._lock:
            self._entries[name] = _Entry(reset, fork_only)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def reset(self, *, after_fork: bool = False) -> None:
        """Forget the process-wide state: every registered part (with `after_fork`, the
        fork-only ones too). A part whose reset raises is logged; the others still reset."""
        with self._lock:
            entries = list(self._entries.items())
        for name, entry in entries:
            if entry.fork_only and not after_fork:
                continue
            try:
                entry.reset()
            except Exception:
                _log.exception("resetting the process state %r failed", name)

    def _after_fork_in_child(self) -> None:
        global generation
        generation += 1
        self._lock = threading.Lock()  # another thread may have held it at the fork
        self.reset(after_fork=True)


# how many forks this process is from the one that imported Kaizen: an object that holds
# per-process resources (a store's connections) compares it with the generation it made them in
generation = 0
state = ProcessState()
register = state.register
names = state.names


def reset(*, after_fork: bool = False) -> None:
    """Forget the process-wide state (see the module docstring): one call, for tests."""
    state.reset(after_fork=after_fork)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: state._after_fork_in_child())
