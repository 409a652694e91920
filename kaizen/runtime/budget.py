"""`Budget`: a token and cost ceiling shared by the nodes of one or several runs, and the
`BudgetGuard` hook that enforces it.

The guard asks every budget that applies to a node before each of its model calls
(`on_model_call_start` → `check`, which raises `BudgetExceededError`, a veto, once a ceiling is
reached) and charges what the call used afterwards (`on_model_call_finish` → `charge`). The runtime
marks a node refused that way SKIPPED ("budget exceeded: ..."); see `LocalRuntime` for what the
run does next. All methods are thread-safe: sync nodes charge from worker threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from kaizen.errors import BudgetExceededError
from kaizen.moments import ModelCallFinished, ModelCallStarted, Usage
from kaizen.runtime.hooks import ModelCallFinishHook, ModelCallStartHook

__all__ = ["Budget", "BudgetGuard"]


class Budget:
    """At most `max_tokens` tokens and `max_cost` USD across every run it is given to.

    A ceiling is checked before a model call, never in the middle of one, so the last call may
    overshoot it by that call's usage; no call starts once the ceiling is reached.
    """

    def __init__(self, max_tokens: int | None = None, max_cost: float | None = None) -> None:
        if max_tokens is not None and max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0 or None, got {max_tokens!r}")
        if max_cost is not None and max_cost < 0:
            raise ValueError(f"max_cost must be >= 0 or None, got {max_cost!r}")
        self.max_tokens = max_tokens
        self.max_cost = max_cost
        self._used = Usage()
        self._lock = threading.Lock()

    @property
    def used(self) -> Usage:
        """A snapshot of everything charged so far."""
        with self._lock:
            u = self._used
            return Usage(u.prompt_tokens, u.completion_tokens, u.cost, u.calls)

    @property
    def remaining_cost(self) -> float | None:
        if self.max_cost is None:
            return None
        return max(0.0, self.max_cost - self.used.cost)

    def charge(self, usage: Usage) -> None:
        """Add what a finished model call used. Never raises: the call already happened."""
        with self._lock:
            self._used.add(usage)

    def exceeded(self) -> str | None:
        """Why no further model call may start, or None while within every ceiling."""
        breach = self._breach()
        return None if breach is None else breach[0]

    def check(self) -> None:
        """Raise `BudgetExceededError` if a ceiling is reached; call it before each model call."""
        breach = self._breach()
        if breach is not None:
            message, limit, used, ceiling = breach
            raise BudgetExceededError(
                f"budget exhausted: {message}; raise Budget({limit}=...) or start a new Budget",
                limit=limit,
                used=used,
                ceiling=ceiling,
            )

    def _breach(self) -> tuple[str, str, float, float] | None:
        with self._lock:
            tokens, cost = self._used.total_tokens, self._used.cost
        if self.max_tokens is not None and tokens >= self.max_tokens:
            message = f"{tokens} tokens used of max_tokens={self.max_tokens}"
            return message, "max_tokens", tokens, self.max_tokens
        if self.max_cost is not None and cost >= self.max_cost:
            message = f"${cost:.4f} spent of max_cost=${self.max_cost:.4f}"
            return message, "max_cost", cost, self.max_cost
        return None

    def __repr__(self) -> str:
        u = self.used
        return (
            f"Budget(max_tokens={self.max_tokens}, max_cost={self.max_cost}, "
            f"used_tokens={u.total_tokens}, used_cost={u.cost:.4f})"
        )


class BudgetGuard(ModelCallStartHook, ModelCallFinishHook):
    """Checks and charges, around every model call, the budgets that apply to its node."""

    name = "kaizen.budget"

    def __init__(self, budgets_for: Callable[[str], Sequence[Budget]]) -> None:
        self._budgets_for = budgets_for

    def budgets_for(self, node_id: str) -> Sequence[Budget]:
        """The budgets that apply to node `node_id` (a Ray worker checks copies of them)."""
        return self._budgets_for(node_id)

    def on_model_call_start(self, event: ModelCallStarted) -> None:
        for budget in self._budgets_for(event.node_id):
            budget.check()

    def on_model_call_finish(self, event: ModelCallFinished) -> None:
        for budget in self._budgets_for(event.node_id):
            budget.charge(event.usage)
