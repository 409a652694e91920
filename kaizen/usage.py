"""`Usage`: what model calls used (tokens, cost, calls, cache hits), summed.

A bottom-layer type: the model call (`kaizen.llm.call`) makes it, the run record
(`kaizen.runtime.record`, which re-exports it), budgets, results and telemetry add it up.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Usage"]


@dataclass(slots=True)
class Usage:
    """Model usage: tokens and cost in USD, summed over calls. `cache_hits` counts the calls
    the model-call cache answered (they cost nothing)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    calls: int = 0
    cache_hits: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def since(self, before: Usage) -> Usage:
        """What was added to this usage after the snapshot `before` was taken."""
        return Usage(
            self.prompt_tokens - before.prompt_tokens,
            self.completion_tokens - before.completion_tokens,
            self.cost - before.cost,
            self.calls - before.calls,
            self.cache_hits - before.cache_hits,
        )

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cost += other.cost
        self.calls += other.calls
        self.cache_hits += other.cache_hits
