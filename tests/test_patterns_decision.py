"""Consensus decision rules: every rule, quorum, threshold, ties, failures, honesty properties."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kaizen.patterns.decision import (
    ConsensusResult,
    Failure,
    Vote,
    decide,
    normalize_answer,
    normalize_confidence,
)


def votes(*specs: tuple[str, str, float]) -> list[Vote]:
    return [Vote(agent=a, answer=ans, confidence=c) for a, ans, c in specs]


def test_majority_vote_picks_the_majority_and_lists_dissent() -> None:
    result = decide(
        votes(("a", "Yes", 0.9), ("b", "yes.", 0.7), ("c", "No", 0.8)), [], rule="majority_vote"
    )
    assert result.reached and result.decision == "Yes"
    assert result.agreement == pytest.approx(2 / 3)
    assert result.confidence == pytest.approx(0.8)  # mean of the supporters
    assert [v.agent for v in result.dissent] == ["c"]
    assert result.reason is None


def test_majority_vote_needs_more_than_half() -> None:
    result = decide(votes(("a", "x", 1), ("b", "y", 1), ("c", "z", 1)), [], quorum=1)
    assert not result.reached
    assert "tie" in (result.reason or "")
    plurality = decide(
        votes(("a", "x", 1), ("b", "x", 1), ("c", "y", 1), ("d", "z", 1)), [], quorum=1
    )
    assert plurality.decision == "x" and not plurality.reached
    assert "no majority" in (plurality.reason or "")


def test_weighted_vote_uses_the_weights() -> None:
    cast = votes(("senior", "no", 0.9), ("j1", "yes", 0.9), ("j2", "yes", 0.9))
    unweighted = decide(cast, [], rule="weighted_vote")
    assert unweighted.decision == "yes"
    weighted = decide(cast, [], rule="weighted_vote", weights={"senior": 3.0})
    assert weighted.reached and weighted.decision == "no"
    assert weighted.agreement == pytest.approx(3 / 5)
    assert {v.agent: v.weight for v in weighted.votes} == {"senior": 3.0, "j1": 1.0, "j2": 1.0}


def test_unanimous_needs_every_agent_and_one_answer() -> None:
    agree = votes(("a", "yes", 0.9), ("b", "YES", 0.8), ("c", "yes!", 0.7))
    assert decide(agree, [], rule="unanimous").reached
    split = decide([*agree, Vote(agent="d", answer="no", confidence=0.9)], [], rule="unanimous")
    assert not split.reached and "not unanimous" in (split.reason or "")
    failed = decide(agree, [Failure(agent="d", error="boom")], rule="unanimous")
    assert not failed.reached
    assert "d" in (failed.reason or "") and failed.failures[0].error == "boom"


def test_average_confidence_weighs_votes_by_confidence() -> None:
    cast = votes(("a", "yes", 0.2), ("b", "yes", 0.2), ("c", "no", 0.95))
    result = decide(cast, [], rule="average_confidence", quorum=1)
    assert result.decision == "no"  # 0.95 of confidence against 0.4
    assert result.agreement == pytest.approx(0.95 / 1.35)
    assert result.reached and result.confidence == pytest.approx(0.95)


def test_below_the_confidence_threshold_is_not_reached() -> None:
    result = decide(votes(("a", "yes", 0.6), ("b", "yes", 0.7)), [], confidence_threshold=0.8)
    assert result.decision == "yes" and not result.reached
    assert "below the threshold" in (result.reason or "")


def test_quorum_failure_is_never_success() -> None:
    failures = [Failure(agent="b", error="ModelError: 500"), Failure(agent="c", error="timeout")]
    result = decide(votes(("a", "yes", 1.0)), failures)
    assert result.quorum == 2 and not result.reached
    assert "only 1 of 3 agents voted" in (result.reason or "")
    assert [f.agent for f in result.failures] == ["b", "c"]
    assert not decide([], [Failure(agent="a", error="x")], quorum=1).reached


def test_explicit_quorum_allows_a_degraded_but_honest_result() -> None:
    result = decide(votes(("a", "yes", 1.0)), [Failure(agent="b", error="down")], quorum=1)
    assert result.reached and result.failures  # reached, and the failure is reported


def test_unknown_rule_is_an_error() -> None:
    with pytest.raises(ValueError, match="majority_vote"):
        decide([], [], rule="plurality")


def test_result_is_json_serialisable() -> None:
    result = decide(votes(("a", "yes", 0.9)), [Failure(agent="b", error="e")], quorum=1)
    data = json.loads(result.model_dump_json())
    assert data["decision"] == "yes" and data["failures"] == [{"agent": "b", "error": "e"}]
    assert ConsensusResult.model_validate(data) == result
    assert "reached" in result.summary()


def test_normalisation() -> None:
    assert normalize_answer("  Yes!! ") == normalize_answer("yes") == "yes"
    assert normalize_confidence("0.93") == pytest.approx(0.93)
    assert normalize_confidence(85) == pytest.approx(0.85)
    assert normalize_confidence(-3) == 0.0
    assert normalize_confidence(1000) == 1.0
    assert normalize_confidence("high") == 0.0
    assert normalize_confidence(float("nan")) == 0.0


_answers = st.sampled_from(["yes", "no", "maybe"])
_vote = st.tuples(_answers, st.floats(0, 1))
_rules = st.sampled_from(["majority_vote", "weighted_vote", "unanimous", "average_confidence"])


@given(
    cast=st.lists(_vote, max_size=8),
    n_failed=st.integers(0, 8),
    rule=_rules,
    threshold=st.floats(0, 1),
)
def test_reached_implies_every_promise(
    cast: list[tuple[str, float]], n_failed: int, rule: str, threshold: float
) -> None:
    """Whatever the votes: reached means quorum met, a majority share, confidence >= threshold."""
    vs = [Vote(agent=f"v{i}", answer=a, confidence=c) for i, (a, c) in enumerate(cast)]
    fs = [Failure(agent=f"f{i}", error="failed") for i in range(n_failed)]
    result = decide(vs, fs, rule=rule, confidence_threshold=threshold)
    assert len(result.votes) + len(result.failures) == len(cast) + n_failed
    assert len(result.dissent) <= len(result.votes)
    if result.reached:
        assert result.reason is None and result.decision is not None
        assert len(vs) >= result.quorum > (len(vs) + n_failed) / 2
        assert result.confidence >= threshold
        if rule == "unanimous":
            assert not fs and not result.dissent
        else:
            assert result.agreement > 0.5
    else:
        assert result.reason
