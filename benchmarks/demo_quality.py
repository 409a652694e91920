"""How good are the demo's answers? Runs the demo's agents N times and counts what goes wrong.

The same workflows as `kaizen demo` (kaizen/cli/demo.py): a one-round debate of the optimist,
pessimist and pragmatist ruled by the moderator, and the five-voter consensus. For every run it
checks:

- side kept: a debater with a side (the optimist for, the pessimist against; see
  ``kaizen.patterns.debate.SIDES``) answered with that position;
- empty answers: an argument or rationale that is empty or blank;
- cut mid-word: a text answer that reached the embedded model's string cap (``STRING_CAP``) and
  does not end on a sentence or an ellipsis, i.e. it stopped inside a word or a sentence;
- repeated answers: a debater's argument or a voter's rationale that another agent of the same
  run gave word for word (roles that all say the same sentence);
- confidence out of range: a confidence outside [0, 1];
- failed agents: nodes that failed (a reply that never parsed, a timeout).

    .venv/bin/python benchmarks/demo_quality.py [--runs 5] [--model local/smollm2]

The embedded model is small and sampled (the demo's temperature): the counts move from run to run.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from typing import Any

_ENDS_CLEANLY = re.compile(r"[.!?…]['\")\]]*$")


def cut_mid_word(text: str, cap: int) -> bool:
    """True for an answer that ran into the length cap and stops inside a sentence."""
    text = text.strip()
    return len(text) >= cap - 1 and not _ENDS_CLEANLY.search(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()

    from kaizen.cli.demo import AGENT_CONFIG, DEBATERS, DEFAULT_TOPIC, JUDGE, VOTERS
    from kaizen.llm.embedded.schema import STRING_CAP
    from kaizen.llm.embedded.weights import LOCAL_MODEL
    from kaizen.patterns import create_consensus_workflow, create_debate_workflow
    from kaizen.patterns.debate import SIDES
    from kaizen.runtime.local import LocalRuntime

    model = args.model or LOCAL_MODEL
    debate = create_debate_workflow(
        list(DEBATERS), topic=DEFAULT_TOPIC, rounds=1, judge=JUDGE, model=model,
        agent_config=AGENT_CONFIG,
    ).build()  # fmt: skip
    consensus = create_consensus_workflow(
        list(VOTERS), "majority_vote", confidence_threshold=0.5,
        question=f"Do you agree with this statement? {DEFAULT_TOPIC}",
        options=["agree", "disagree"], model=model, agent_config=AGENT_CONFIG,
    ).build()  # fmt: skip

    counts: Counter[str] = Counter()
    texts: list[str] = []
    confidences: list[float] = []

    def repeated(answers: list[str]) -> int:
        """How many of `answers` (one run's, one kind) another agent gave word for word."""
        seen = Counter(a.strip() for a in answers)
        return sum(n for text, n in seen.items() if text and n > 1)

    started = time.perf_counter()
    for run in range(args.runs):
        runtime = LocalRuntime(failure_policy="continue")
        results, _ = runtime.execute(debate)
        arguments: list[str] = []
        for debater in DEBATERS:
            out = results.get(f"round1/{debater}")
            if out is None:
                counts["failed agents"] += 1
                continue
            counts["debater answers"] += 1
            side = SIDES.get(debater)
            if side is not None:
                counts["sided debaters"] += 1
                counts["side kept"] += out.get("position") == side
            texts.append(str(out.get("argument", "")))
            arguments.append(texts[-1])
            confidences.append(float(out.get("confidence", 0.0)))
        counts["repeated answers"] += repeated(arguments)
        verdict = results.get(JUDGE)
        if verdict is None:
            counts["failed agents"] += 1
        else:
            texts.append(str(verdict.get("rationale", "")))
        results, _ = runtime.execute(consensus)
        rationales: list[str] = []
        for voter in VOTERS:
            out = results.get(voter)
            if out is None:
                counts["failed agents"] += 1
                continue
            texts.append(str(out.get("rationale", "")))
            rationales.append(texts[-1])
            confidences.append(float(out.get("confidence", 0.0)))
        counts["repeated answers"] += repeated(rationales)
        print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
    elapsed = time.perf_counter() - started

    counts["text answers"] = len(texts)
    counts["empty answers"] = sum(not t.strip() for t in texts)
    counts["cut mid-word"] = sum(cut_mid_word(t, STRING_CAP) for t in texts)
    counts["at the cap, ended cleanly"] = sum(
        len(t.strip()) >= STRING_CAP - 1 and not cut_mid_word(t, STRING_CAP) for t in texts
    )
    print(f"{args.runs} runs of the demo's agents on {model} in {elapsed:.0f} s")
    report: dict[str, Any] = {
        "side kept": f"{counts['side kept']}/{counts['sided debaters']}",
        "empty answers": f"{counts['empty answers']}/{counts['text answers']}",
        "cut mid-word": f"{counts['cut mid-word']}/{counts['text answers']}",
        "at the cap, ended cleanly": f"{counts['at the cap, ended cleanly']}/"
        f"{counts['text answers']}",
        "repeated answers": f"{counts['repeated answers']}/"
        f"{counts['debater answers'] + len(VOTERS) * args.runs}",
        "confidence out of [0, 1]": f"{sum(not 0 <= c <= 1 for c in confidences)}/"
        f"{len(confidences)}",
        "failed agents": counts["failed agents"],
    }
    for key, value in report.items():
        print(f"  {key:<28} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
