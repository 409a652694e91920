"""Aggregator nodes of the debate and consensus patterns.

- `DebateRoundNode` collects one round's arguments into the list the next round (or the judge)
  reads; a debater that failed is left out, and the round says so.
- `ConvergenceNode` decides after a round whether positions converged: it routes the arguments
  either to the next round (`next_arguments`) or straight to the judge (`final_arguments`).
- `FinalArgumentsNode` hands the judge the arguments of the last round that completed.
- `ConsensusNode` turns the votes of agents that ran in parallel into a `ConsensusResult`; agents
  that produced no vote are failures, with the error the run recorded for them.

Per-member input ports are named `<member key>__<field>`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from kaizen.nodes.base import Node, Port
from kaizen.patterns.decision import (
    ConsensusResult,
    Failure,
    Vote,
    decide,
    normalize_answer,
    normalize_confidence,
)

SEP = "__"


def member_port(key: str, field: str) -> str:
    return f"{key}{SEP}{field}"


def _by_member(inputs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    grouped: dict[str, dict[str, Any]] = {}
    for port, value in inputs.items():
        key, _, field = port.rpartition(SEP)
        if key:
            grouped.setdefault(key, {})[field] = value
    return grouped


def upstream_error(node_id: str) -> str:
    """What the current run recorded for `node_id`: its error or skip reason, if known."""
    from kaizen.runtime.context import current_node_context

    ctx = current_node_context()
    run = ctx.record.nodes.get(node_id) if ctx is not None else None
    if run is not None:
        if run.error:
            return run.error
        if run.skip_reason:
            return f"skipped: {run.skip_reason}"
    return "no vote produced"


class DebateRoundNode(Node):
    """Collects round `round` into `arguments` ("name (position, confidence): argument", for the
    judge) and `said` (the arguments alone, for the next round's debaters: a small model copies
    a transcript's "name (for, confidence 0.80):" lines into its own answer when it sees them).

    Config: `round` (int), `members` ({key: {field: output name}} with the fields `argument` and,
    when the debater has them, `position` and `confidence`), `gated` (early stop: an input
    `previous_arguments` from the convergence check, so a round after the stop is skipped).
    Outputs: `arguments` (list[str]), `said` (list[str]), `positions` ({key: position}),
    `transcript` (one dict per
    debater). When no debater produced an argument (every one failed or was skipped), nothing is
    produced and the rest is skipped.
    """

    type_name = "DebateRound"
    accepts_partial_inputs: ClassVar[bool] = True
    config_keys: ClassVar[frozenset[str] | None] = frozenset({"round", "members", "gated"})

    def make_ports(self) -> tuple[Iterable[Port], Iterable[Port]]:
        inputs = [
            Port(member_port(key, field), Any)
            for key, fields in self.config["members"].items()
            for field in fields
        ]
        if self.config.get("gated"):
            inputs.append(Port("previous_arguments", list[str], default=None))
        outputs = (
            Port("arguments", list[str], description="this round's arguments, one per debater"),
            Port("said", list[str], description="the arguments without who said them"),
            Port("positions", dict[str, str], description="each debater's position"),
            Port("transcript", list[dict[str, Any]], description="what each debater said"),
        )
        return inputs, outputs

    def run(self, **inputs: Any) -> dict[str, Any]:
        produced = _by_member(inputs)
        transcript: list[dict[str, Any]] = []
        arguments: list[str] = []
        positions: dict[str, str] = {}
        for key in self.config["members"]:
            said = produced.get(key)
            if not said or "argument" not in said:
                continue
            position = str(said.get("position", "")).strip()
            entry = {"debater": key, "argument": str(said["argument"]).strip()}
            head = key
            if position:
                entry["position"] = position
                positions[key] = position
            if "confidence" in said:
                confidence = normalize_confidence(said.get("confidence"))
                entry["confidence"] = confidence
                head = f"{key} ({position or 'no position'}, confidence {confidence:.2f})"
            elif position:
                head = f"{key} ({position})"
            transcript.append(entry)
            arguments.append(f"{head}: {entry['argument']}")
        if not transcript:
            return {}
        return {
            "arguments": arguments,
            "said": [item["argument"] for item in transcript],
            "positions": positions,
            "transcript": transcript,
        }


class ConvergenceNode(Node):
    """After round `round`: converged when at least `agreement` of the debaters hold one position.

    Outputs `converged` (bool), then the arguments on exactly one of `next_arguments` (the debate
    goes on; `next_said` carries the round's `said` on with them) or `final_arguments` (it stops
    here: `stopped` says the round). Once the debate has
    stopped, the checks of later rounds receive `stopped` from the one before and pass it on, so
    every later round hears directly why it does not run: "converged after round r".
    """

    type_name = "Convergence"
    accepts_partial_inputs: ClassVar[bool] = True
    config_keys: ClassVar[frozenset[str] | None] = frozenset({"round", "agreement", "debaters"})
    input_ports = (
        Port("arguments", list[str]),
        Port("positions", dict[str, str]),
        Port("said", list[str], default=None, description="the arguments without who said them"),
        Port("stopped", int, default=None, description="the round the debate stopped after"),
    )
    output_ports = (
        Port("converged", bool),
        Port("next_arguments", list[str]),
        Port("next_said", list[str]),
        Port("final_arguments", list[str]),
        Port("stopped", int),
    )

    def run(self, **inputs: Any) -> dict[str, Any]:
        if inputs.get("stopped") is not None:
            return {"stopped": inputs["stopped"]}
        if "arguments" not in inputs or "positions" not in inputs:
            return {}  # the round produced nothing (every debater failed): nothing to pass on
        converged = positions_converged(
            inputs["positions"],
            debaters=int(self.config["debaters"]),
            agreement=float(self.config.get("agreement", 1.0)),
        )
        if converged:
            return {
                "converged": True,
                "final_arguments": inputs["arguments"],
                "stopped": int(self.config["round"]),
            }
        said = inputs.get("said")
        return {
            "converged": False,
            "next_arguments": inputs["arguments"],
            "next_said": inputs["arguments"] if said is None else said,
        }

    def unproduced_reason(self, outputs: Mapping[str, Any]) -> str | None:
        """Why the ports left out of `outputs` were not produced (the runtime's skip reason)."""
        if outputs.get("stopped") is not None:
            return f"converged after round {outputs['stopped']}"
        return None


def positions_converged(positions: Mapping[str, str], *, debaters: int, agreement: float) -> bool:
    """True when one position is held by at least `agreement` of all `debaters` (failed too)."""
    if not positions or debaters <= 0:
        return False
    counts: dict[str, int] = {}
    for position in positions.values():
        key = normalize_answer(position)
        counts[key] = counts.get(key, 0) + 1
    return max(counts.values()) / debaters >= agreement


class FinalArgumentsNode(Node):
    """Passes on the arguments of the last round that finished (inputs `round1`..`roundN`)."""

    type_name = "FinalArguments"
    accepts_partial_inputs: ClassVar[bool] = True
    config_keys: ClassVar[frozenset[str] | None] = frozenset({"rounds"})

    def make_ports(self) -> tuple[Iterable[Port], Iterable[Port]]:
        rounds = int(self.config["rounds"])
        inputs = [Port(f"round{r}", list[str]) for r in range(1, rounds + 1)]
        outputs = (Port("arguments", list[str]), Port("rounds_completed", int))
        return inputs, outputs

    def run(self, **inputs: Any) -> dict[str, Any]:
        for r in range(int(self.config["rounds"]), 0, -1):
            if f"round{r}" in inputs:
                return {"arguments": inputs[f"round{r}"], "rounds_completed": r}
        return {}


class ConsensusNode(Node):
    """Decides on the votes of agents that ran in parallel; see `kaizen.patterns.decision`.

    Config: `members` ({key: {"node": node id, "agent": name, "fields": {role: output name}}}
    where the roles are `answer` and optionally `confidence`, `rationale`), `rule`,
    `confidence_threshold`, `quorum` (None: a majority of the members), `weights` ({key: w}).
    Outputs `result` (`ConsensusResult`), `decision` and `reached`.
    """

    type_name = "Consensus"
    accepts_partial_inputs: ClassVar[bool] = True
    runs_without_inputs: ClassVar[bool] = True  # "every agent failed" is a result to report
    config_keys: ClassVar[frozenset[str] | None] = frozenset(
        {"members", "rule", "confidence_threshold", "quorum", "weights"}
    )

    def make_ports(self) -> tuple[Iterable[Port], Iterable[Port]]:
        inputs = [
            Port(member_port(key, role), Any)
            for key, spec in self.config["members"].items()
            for role in spec["fields"]
        ]
        outputs = (
            Port("result", ConsensusResult, description="decision, votes, dissent, failures"),
            Port("decision", str | None),
            Port("reached", bool),
        )
        return inputs, outputs

    def run(self, **inputs: Any) -> dict[str, Any]:
        produced = _by_member(inputs)
        votes: list[Vote] = []
        failures: list[Failure] = []
        for key, spec in self.config["members"].items():
            said = produced.get(key, {})
            if "answer" not in said or said["answer"] is None:
                failures.append(Failure(agent=key, error=upstream_error(spec["node"])))
                continue
            votes.append(
                Vote(
                    agent=key,
                    answer=str(said["answer"]).strip(),
                    confidence=normalize_confidence(said.get("confidence"))
                    if "confidence" in spec["fields"]
                    else 1.0,
                    rationale=str(said.get("rationale", "") or ""),
                )
            )
        result = decide(
            votes,
            failures,
            rule=self.config.get("rule", "majority_vote"),
            confidence_threshold=float(self.config.get("confidence_threshold", 0.0)),
            quorum=self.config.get("quorum"),
            weights=self.config.get("weights") or {},
        )
        return {"result": result, "decision": result.decision, "reached": result.reached}
