"""Consensus decision rules and their honest result: `ConsensusResult`, `Vote`, `Failure`, `decide`.

`decide` is pure: it takes the votes that were cast and the agents that failed to cast one and
applies one rule. Every rule refuses to report consensus when fewer than `quorum` agents voted,
when the decision's confidence is below the threshold, or when the rule's own agreement test fails;
the result then says `reached=False` and `reason` says why.

Rules (answers are compared after trimming, case-folding and dropping trailing punctuation):

- `majority_vote`: the answer with more than half of the votes cast.
- `weighted_vote`: the answer with more than half of the total weight of the votes cast
  (`weights` per agent name, default 1.0).
- `unanimous`: every agent voted, and all for the same answer (a failed agent breaks unanimity).
- `average_confidence`: votes weighted by their confidence; the answer with more than half of the
  total confidence wins.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DecisionRule = Literal["majority_vote", "weighted_vote", "unanimous", "average_confidence"]
DECISION_RULES: tuple[str, ...] = (
    "majority_vote",
    "weighted_vote",
    "unanimous",
    "average_confidence",
)

_TRAILING = re.compile(r"[\s.!?,;:]+$")


class Vote(BaseModel):
    """One agent's vote: its answer, its confidence in [0, 1], its rationale if it gave one, and
    its `weight` under the rule (1, its configured weight, or its confidence)."""

    model_config = ConfigDict(frozen=True)

    agent: str
    answer: str
    confidence: float
    rationale: str = ""
    weight: float = 1.0


class Failure(BaseModel):
    """An agent that cast no vote, and why."""

    model_config = ConfigDict(frozen=True)

    agent: str
    error: str


class ConsensusResult(BaseModel):
    """What a consensus run decided, and how honestly it can claim to have decided it.

    `decision` is the winning answer (None when no answer led); `reached` is True only when the rule
    agreed, the quorum voted and the confidence met the threshold. `agreement` is the share (votes,
    weight or confidence, by rule) of the votes cast that support the decision; `confidence` is the
    mean confidence of those supporters. `dissent` holds the votes against the decision,
    `failures` the agents that cast none, `reason` why consensus was not reached.
    """

    model_config = ConfigDict(frozen=True)

    rule: str
    decision: str | None
    reached: bool
    agreement: float
    confidence: float
    quorum: int
    votes: list[Vote] = Field(default_factory=list)
    dissent: list[Vote] = Field(default_factory=list)
    failures: list[Failure] = Field(default_factory=list)
    reason: str | None = None

    @property
    def agents(self) -> int:
        return len(self.votes) + len(self.failures)

    def summary(self) -> str:
        """One line for people: decision, agreement, confidence, and why not when not reached."""
        state = "reached" if self.reached else "NOT reached"
        head = (
            f"consensus {state} ({self.rule}): {self.decision!r}, "
            f"agreement {self.agreement:.0%}, confidence {self.confidence:.2f}, "
            f"{len(self.votes)}/{self.agents} voted"
        )
        return head if self.reached else f"{head}; {self.reason}"


def normalize_answer(answer: Any) -> str:
    """The form answers are compared in: trimmed, case-folded, without trailing punctuation."""
    return _TRAILING.sub("", str(answer).strip()).casefold()


def normalize_confidence(value: Any) -> float:
    """A confidence in [0, 1]: percentages (1 < x <= 100) are scaled, anything else is clamped.

    Models often answer 85 for 0.85; a missing or unreadable confidence counts as 0.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    if math.isnan(number):
        return 0.0
    if 1.0 < number <= 100.0:
        number /= 100.0
    return min(1.0, max(0.0, number))


def default_quorum(n_agents: int) -> int:
    """A majority of the agents: more than half of them must vote."""
    return n_agents // 2 + 1


def decide(
    votes: Sequence[Vote],
    failures: Sequence[Failure],
    *,
    rule: str = "majority_vote",
    confidence_threshold: float = 0.0,
    quorum: int | None = None,
    weights: Mapping[str, float] | None = None,
) -> ConsensusResult:
    """Apply `rule` to the votes cast; `failures` are the agents that cast none."""
    if rule not in DECISION_RULES:
        raise ValueError(
            f"unknown decision rule {rule!r}; choose one of {', '.join(DECISION_RULES)}"
        )
    n_agents = len(votes) + len(failures)
    needed = default_quorum(n_agents) if quorum is None else quorum
    weights = weights or {}
    weighted = [v.model_copy(update={"weight": _weight_of(v, rule, weights)}) for v in votes]

    tally: dict[str, float] = {}
    shown: dict[str, str] = {}  # normalized answer -> the first spelling seen
    for vote in weighted:
        key = normalize_answer(vote.answer)
        tally[key] = tally.get(key, 0.0) + vote.weight
        shown.setdefault(key, vote.answer.strip())
    total = sum(tally.values())

    leader: str | None = None
    if tally:
        ranked = sorted(tally.items(), key=lambda item: item[1], reverse=True)
        if len(ranked) == 1 or ranked[0][1] > ranked[1][1]:
            leader = ranked[0][0]
    supporters = [
        v for v in weighted if leader is not None and normalize_answer(v.answer) == leader
    ]
    dissent = [v for v in weighted if v not in supporters]
    agreement = tally[leader] / total if leader is not None and total > 0 else 0.0
    confidence = sum(v.confidence for v in supporters) / len(supporters) if supporters else 0.0

    reason = _why_not(
        rule=rule,
        votes=weighted,
        failures=failures,
        tally=tally,
        shown=shown,
        leader=leader,
        agreement=agreement,
        confidence=confidence,
        threshold=confidence_threshold,
        needed=needed,
    )
    return ConsensusResult(
        rule=rule,
        decision=shown[leader] if leader is not None else None,
        reached=reason is None,
        agreement=agreement,
        confidence=confidence,
        quorum=needed,
        votes=list(weighted),
        dissent=dissent,
        failures=list(failures),
        reason=reason,
    )


def _weight_of(vote: Vote, rule: str, weights: Mapping[str, float]) -> float:
    if rule == "weighted_vote":
        return float(weights.get(vote.agent, 1.0))
    if rule == "average_confidence":
        return vote.confidence
    return 1.0


def _why_not(
    *,
    rule: str,
    votes: Sequence[Vote],
    failures: Sequence[Failure],
    tally: Mapping[str, float],
    shown: Mapping[str, str],
    leader: str | None,
    agreement: float,
    confidence: float,
    threshold: float,
    needed: int,
) -> str | None:
    """Why consensus was not reached, or None when it was. The first failed test is reported."""
    if failures and len(votes) < needed:
        names = ", ".join(f.agent for f in failures)
        total = len(votes) + len(failures)
        return f"only {len(votes)} of {total} agents voted (quorum {needed}); failed: {names}"
    if len(votes) < needed:
        return f"only {len(votes)} vote(s) cast, quorum is {needed}"
    if rule == "unanimous" and failures:
        names = ", ".join(f.agent for f in failures)
        return f"unanimity needs every agent's vote; no vote from: {names}"
    if leader is None:
        if not tally:
            return "no votes were cast"
        top = max(tally.values())
        tied = sorted(shown[k] for k, v in tally.items() if v == top)
        return f"tie between {', '.join(repr(t) for t in tied)}"
    if rule == "unanimous" and len(tally) > 1:
        others = sorted(shown[k] for k in tally if k != leader)
        return (
            f"not unanimous: {len(tally)} different answers (also {', '.join(map(repr, others))})"
        )
    if rule != "unanimous" and agreement <= 0.5:
        measure = {
            "majority_vote": "of the votes",
            "weighted_vote": "of the vote weight",
            "average_confidence": "of the total confidence",
        }[rule]
        return f"no majority: {shown[leader]!r} has {agreement:.0%} {measure}, more than 50% needed"
    if confidence < threshold:
        return f"confidence {confidence:.2f} is below the threshold {threshold:.2f}"
    return None
