"""A token / cost ceiling on a pattern: `attach_budget` puts a `Budget` on the builder it returns.

The built workflow carries the budget, and a runtime without a budget of its own enforces it:
before each model call the agent checks it, so once a ceiling is reached no new call starts and
the nodes that did not run are SKIPPED with the reason ("budget exceeded: ...") in the run record.
A budget is a wallet: every run of workflows built from the builder draws on the same one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kaizen.runtime.budget import Budget
    from kaizen.workflow.builder import WorkflowBuilder


def attach_budget(
    builder: WorkflowBuilder,
    budget: Budget | None = None,
    *,
    max_tokens: int | None = None,
    max_cost: float | None = None,
) -> Budget | None:
    """Give `builder` a budget: `budget` itself, or a new one from `max_tokens` / `max_cost`."""
    from kaizen.runtime.budget import Budget

    if budget is not None and (max_tokens is not None or max_cost is not None):
        raise ValueError("give either budget=Budget(...) or max_tokens / max_cost, not both")
    if budget is None and (max_tokens is not None or max_cost is not None):
        budget = Budget(max_tokens=max_tokens, max_cost=max_cost)
    if budget is not None:
        if not isinstance(budget, Budget):
            raise TypeError(f"budget must be a kaizen.Budget, got {type(budget).__name__}")
        builder.budget = budget
    return budget


__all__ = ["attach_budget"]
