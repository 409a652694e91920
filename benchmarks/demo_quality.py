"""How good are the demo's answers? Runs the demo's agents N times and counts what goes wrong.

The same workflows as `kaizen demo` (kaizen/cli/demo.py): the debate of the optimist, pessimist
and pragmatist over the demo's rounds, ruled by the moderator, and the five-voter consensus. For
every run it counts, over the text answers (arguments, the verdict's rationale, the votes'
rationales):

- degenerate strings: `kaizen.text.degenerate` (a unit of 1-12 characters repeated 4 or more
  times in a row, or under half the characters letters);
- transcript echo: an argument that starts with an agent's name or carries the transcript's
  "(for, confidence 0.80)" metadata;
- side kept: a sided debater (the optimist for, the pessimist against; see
  ``kaizen.patterns.debate.SIDES``) whose `position` output is its side (the schema forces it);
- side contradiction: a sided debater whose *argument* the stance rule (`stance`, below) judges
  to argue the other side; "side argued" counts those it judges to argue their own (the rest it
  leaves unclear). On the embedded model a sided argument opens with a phrase of its side
  (``kaizen.patterns.debate.SIDE_OPENINGS``): the rule judges what follows the opening, the
  model's own words;
- vote contradiction: a consensus vote whose rationale the stance rule judges to contradict the
  vote (an "agree" explained by "No, I do not agree ...");
- empty answers, answers cut mid-word at the string cap, repeated answers (another agent of the
  same run said the very same words), confidences outside [0, 1], failed agents.

The stance rule is a documented keyword rule, not a model: it looks for explicit agreement
("I agree", "yes", "I disagree", "no,") and for evaluative words about the proposition (better,
benefit, advantage, ... against worse, drawback, isolation, ...), a negation within three words
before a word flipping it, and calls the text *for*, *against* or *unclear* (no contradiction is
counted for unclear). Its own error on 20 hand-labelled answers it was not tuned on
(``benchmarks/stance_examples.json``) is printed with every report: so far it errs by leaving
an answer unclear, which makes the contradiction counts lower bounds.

    .venv/bin/python benchmarks/demo_quality.py [--runs 10] [--model local/smollm2] [--save F]

`--save F` writes every text with its checks to F (JSON), for reading and labelling. The
embedded model is small and sampled (the demo's temperature): counts move from run to run; use
`--runs 10` on a quiet machine for figures worth comparing.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

EXAMPLES = Path(__file__).with_name("stance_examples.json")
_ENDS_CLEANLY = re.compile(r"[.!?…]['\")\]]*$")
_METADATA = re.compile(r"\((?:for|against|[a-z ]+),\s*confidence\s+[0-9.]+\)", re.IGNORECASE)

# --- the stance rule ----------------------------------------------------------------------------
# The demo's proposition is "Remote work is better than working in an office": the words that
# name its subject and the thing it is compared with.
SUBJECT = {"remote", "home"}
CONTRAST = {"office", "offices"}
# Words that judge what they are said of good (+1) or bad (-1).
_GOOD = {
    "better", "best", "benefit", "benefits", "beneficial", "advantage", "advantages", "improve",
    "improves", "improved", "improving", "productive", "productivity", "flexible", "flexibility",
    "freedom", "efficient", "efficiency", "effective", "happier", "saves", "save", "saving",
    "savings", "good", "great", "positive", "gain", "gains", "helps", "help", "boost", "boosts",
    "comfortable", "convenient", "balance", "autonomy", "valuable", "superior", "engaging",
    "undeniable", "viable", "smarter", "satisfaction", "sustainable",
}  # fmt: skip
_BAD = {
    "worse", "worst", "harm", "harms", "harmful", "drawback", "drawbacks", "disadvantage",
    "disadvantages", "isolation", "isolated", "lonely", "loneliness", "distraction",
    "distractions", "distracting", "lack", "lacks", "risk", "risks", "problem", "problems",
    "difficult", "difficulty", "challenge", "challenges", "challenging", "bad", "negative",
    "hurt", "hurts", "burnout", "costly", "cost", "costs", "loss", "inferior", "fails", "suffer",
    "suffers", "downside", "downsides", "unproductive", "overwork", "stress", "stressful",
}  # fmt: skip
# A negation, or a word that takes away what follows ("reduces stress" is good), within three
# words before an evaluative word flips it.
_FLIPS = {
    "not", "no", "never", "without", "cannot", "nor", "isn't", "doesn't", "don't", "aren't",
    "won't", "can't", "hardly", "reduce", "reduces", "reduced", "reducing", "less", "fewer",
    "lower", "avoid", "avoids",
}  # fmt: skip
_CONCESSIVE = ("while", "although", "though", "even though", "despite")
# A clause that goes on with the one before ("..., such as flexibility, ...") keeps its weight.
_CONTINUING = ("such as", "including", "like", "and ", "or ", "as well as")
_WORD = re.compile(r"[a-z']+")


def stance(text: str) -> str:
    """``for``, ``against`` or ``unclear``: the stance of `text` towards the demo's proposition.

    The keyword rule: an explicit opening ("I agree", "Yes", "I disagree", "No,") decides.
    Otherwise every evaluative word (`_GOOD` +1, `_BAD` -1; flipped by a negation or a
    "reduces" within three words before it) is said of the proposition's subject (remote work:
    counts as is) or of what it is compared with (the office: counts reversed): of the first
    mention after it when the word is followed by "of" ("the benefits of remote work"), else of
    the nearest mention before it in the sentence, else of the nearest after, else of the
    subject. A leading concessive clause ("While remote work has benefits, ...") counts
    reversed, as do the clauses that go on with it ("such as ...", "including ..."); a clause
    after "but" or "however" counts twice. The sign of the sum decides.
    """
    lowered = text.lower().replace("\u2019", "'")
    if re.match(r"\s*(no\b|i do not agree|i don't agree|i disagree)", lowered):
        return "against"
    if re.match(r"\s*(yes\b|i agree|i strongly agree)", lowered):
        return "for"
    score = 0.0
    for sentence in re.split(r"[.!?;]+", lowered):
        clauses = re.split(r",", sentence)
        mentions = _mentions(_WORD.findall(sentence))
        weight = 1.0
        for n, clause in enumerate(clauses):
            words = _WORD.findall(clause)
            if n == 0 and len(clauses) > 1 and clause.strip().startswith(_CONCESSIVE):
                weight = -1.0
            elif words[:1] in (["but"], ["however"]) or " but " in f" {clause} ":
                weight = 2.0
            elif not clause.strip().startswith(_CONTINUING):
                weight = 1.0
            offset = len(_WORD.findall(sentence[: sentence.find(clause)])) if clause else 0
            score += weight * _clause_score(words, offset, mentions)
    return "for" if score > 0 else "against" if score < 0 else "unclear"


def _mentions(sentence_words: list[str]) -> list[tuple[int, int]]:
    """Where a sentence names the subject (+1) or what it is compared with (-1), by word index."""
    return [
        (i, 1 if w in SUBJECT else -1)
        for i, w in enumerate(sentence_words)
        if w in SUBJECT or w in CONTRAST
    ]


def _clause_score(words: list[str], offset: int, mentions: list[tuple[int, int]]) -> float:
    """The evaluative words of one clause (its first word at `offset` in the sentence), each
    signed by what it is said of (see `stance`)."""
    total = 0.0
    for j, word in enumerate(words):
        polarity = 1 if word in _GOOD else -1 if word in _BAD else 0
        if not polarity:
            continue
        if any(w in _FLIPS for w in words[max(0, j - 3) : j]):
            polarity = -polarity
        i = offset + j
        after = [side for at, side in mentions if at > i]
        before = [side for at, side in mentions if at < i]
        if words[j + 1 : j + 2] == ["of"] and after:
            side = after[0]
        elif before:
            side = before[-1]
        elif after:
            side = after[0]
        else:
            side = 1
        total += polarity * side
    return total


def stance_error(which: str = "held-out") -> tuple[int, int, int]:
    """The stance rule on the hand-labelled examples of one set: (wrong side, unclear, total).

    ``benchmarks/stance_examples.json`` holds 40 answers of the embedded model from one
    `--runs 10` measure (before this round's changes), labelled by hand: 20 the rule was tuned
    on ("tuning") and 20 it never saw while tuned ("held-out"); the held-out figure is its error.
    """
    examples = [e for e in json.loads(EXAMPLES.read_text()) if e["set"] == which]
    judged = [stance(e["text"]) for e in examples]
    unclear = sum(j == "unclear" for j in judged)
    wrong = sum(j not in ("unclear", e["stance"]) for j, e in zip(judged, examples, strict=True))
    return wrong, unclear, len(examples)


# --- the other checks ---------------------------------------------------------------------------


def without_opening(text: str) -> str:
    """An argument without the side's opening the embedded model's grammar made it start with
    (`kaizen.patterns.debate.SIDE_OPENINGS`): what the model wrote itself is judged, so the
    opening's own words ("benefit", "risk") never count towards the side it was given."""
    from kaizen.patterns.debate import SIDE_OPENINGS

    for opening in (o for side in SIDE_OPENINGS.values() for o in side):
        if text.startswith(opening):
            return text[len(opening) :].lstrip()
    return text


def cut_mid_word(text: str, cap: int) -> bool:
    """True for an answer that ran into the length cap and stops inside a sentence."""
    text = text.strip()
    return len(text) >= cap - 1 and not _ENDS_CLEANLY.search(text)


def echoes_transcript(text: str, names: tuple[str, ...]) -> bool:
    """An argument that starts with an agent's name or carries the transcript's metadata."""
    head = text.strip().lower()
    return any(head.startswith(name) for name in names) or bool(_METADATA.search(text))


@dataclass
class Answer:
    """One text answer of one run, with what the checks found."""

    run: int
    agent: str
    kind: str  # argument, verdict, vote
    text: str
    side: str | None = None  # the debater's side, or the vote ("for" = agree)
    problems: list[str] = field(default_factory=list)


def check(answer: Answer, names: tuple[str, ...], cap: int) -> None:
    from kaizen.text import degenerate

    text = answer.text
    if not text.strip():
        answer.problems.append("empty")
        return
    if degenerate(text):
        answer.problems.append("degenerate")
    if cut_mid_word(text, cap):
        answer.problems.append("cut mid-word")
    if answer.kind == "argument" and echoes_transcript(text, names):
        answer.problems.append("transcript echo")
    if answer.side is not None:
        judged = stance(without_opening(text) if answer.kind == "argument" else text)
        if judged != "unclear" and judged != answer.side:
            answer.problems.append(
                "side contradiction" if answer.kind == "argument" else "vote contradiction"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", default=None)
    parser.add_argument("--save", default=None, help="write every answer and its checks here")
    args = parser.parse_args()

    from kaizen.cli.demo import AGENT_CONFIG, DEBATERS, DEFAULT_TOPIC, JUDGE, ROUNDS, VOTERS
    from kaizen.llm.embedded.schema import STRING_CAP
    from kaizen.llm.embedded.weights import LOCAL_MODEL
    from kaizen.patterns import create_consensus_workflow, create_debate_workflow
    from kaizen.patterns.debate import SIDES
    from kaizen.runtime.local import LocalRuntime

    model = args.model or LOCAL_MODEL
    debate = create_debate_workflow(
        list(DEBATERS), topic=DEFAULT_TOPIC, rounds=ROUNDS, judge=JUDGE, model=model,
        agent_config=AGENT_CONFIG,
    ).build()  # fmt: skip
    consensus = create_consensus_workflow(
        list(VOTERS), "majority_vote", confidence_threshold=0.5,
        question=f"Do you agree with this statement? {DEFAULT_TOPIC}",
        options=["agree", "disagree"], model=model, agent_config=AGENT_CONFIG,
    ).build()  # fmt: skip
    names = tuple(n.lower() for n in (*DEBATERS, JUDGE, *VOTERS))

    counts: Counter[str] = Counter()
    answers: list[Answer] = []
    confidences: list[float] = []
    started = time.perf_counter()
    for run in range(1, args.runs + 1):
        runtime = LocalRuntime(failure_policy="continue")
        results, _ = runtime.execute(debate)
        for r in range(1, ROUNDS + 1):
            said: list[str] = []
            for debater in DEBATERS:
                out = results.get(f"round{r}/{debater}")
                if out is None:
                    counts["failed agents"] += 1
                    continue
                side = SIDES.get(debater)
                if side is not None:
                    counts["sided arguments"] += 1
                    counts["side kept"] += out.get("position") == side
                answers.append(
                    Answer(
                        run, f"round{r}/{debater}", "argument", str(out.get("argument", "")), side
                    )
                )
                said.append(answers[-1].text.strip())
                confidences.append(float(out.get("confidence", 0.0)))
            counts["repeated answers"] += _repeated(said)
        verdict = results.get(JUDGE)
        if verdict is None:
            counts["failed agents"] += 1
        else:
            answers.append(Answer(run, JUDGE, "verdict", str(verdict.get("rationale", ""))))
        results, _ = runtime.execute(consensus)
        said = []
        for voter in VOTERS:
            out = results.get(voter)
            if out is None:
                counts["failed agents"] += 1
                continue
            vote = {"agree": "for", "disagree": "against"}.get(str(out.get("answer")))
            answers.append(Answer(run, voter, "vote", str(out.get("rationale", "")), vote))
            said.append(answers[-1].text.strip())
            confidences.append(float(out.get("confidence", 0.0)))
        counts["repeated answers"] += _repeated(said)
        print(f"run {run}/{args.runs} done", file=sys.stderr)
    elapsed = time.perf_counter() - started

    for answer in answers:
        check(answer, names, STRING_CAP)
    found = Counter(p for a in answers for p in a.problems)
    arguments = sum(a.kind == "argument" for a in answers)
    sided = sum(a.kind == "argument" and a.side is not None for a in answers)
    votes = sum(a.kind == "vote" and a.side is not None for a in answers)
    total = len(answers)
    wrong, unclear, labelled = stance_error()
    out_of_range = sum(not 0 <= c <= 1 for c in confidences)
    argued = sum(
        a.kind == "argument" and a.side is not None and stance(without_opening(a.text)) == a.side
        for a in answers
    )
    rows = [
        ("degenerate strings", found["degenerate"], total, "0"),
        ("transcript echo", found["transcript echo"], arguments, "0"),
        ("side contradiction", found["side contradiction"], sided, "halved"),
        ("side argued (content)", argued, sided, ""),
        ("vote contradiction", found["vote contradiction"], votes, ""),
        ("side kept (position)", counts["side kept"], counts["sided arguments"], "all"),
        ("empty answers", found["empty"], total, "0"),
        ("cut mid-word", found["cut mid-word"], total, "0"),
        ("repeated answers", counts["repeated answers"], total, ""),
        ("confidence out of [0, 1]", out_of_range, len(confidences), "0"),
        ("failed agents", counts["failed agents"], total + counts["failed agents"], "0"),
    ]  # fmt: skip
    print(
        f"demo quality: {args.runs} runs of the demo's agents on {model} in {elapsed:.0f} s "
        f"({elapsed / max(args.runs, 1):.1f} s per run)"
    )
    print(f"  {'check':<26} {'count':>7} {'of':>5} {'rate':>7}  target")
    for name, count, of, target in rows:
        rate = f"{count / of:.0%}" if of else "-"
        print(f"  {name:<26} {count:>7} {of:>5} {rate:>7}  {target}")
    print(
        f"  the stance rule on {labelled} held-out hand-labelled answers: {wrong} judged to the "
        f"wrong side, {unclear} left unclear (contradictions are counted only when it is sure)"
    )
    if args.save:
        Path(args.save).write_text(json.dumps([asdict(a) for a in answers], indent=1))
        print(f"  answers written to {args.save}")
    return 0


def _repeated(said: list[str]) -> int:
    """How many of one run's answers of one kind another agent gave word for word."""
    seen = Counter(said)
    return sum(n for text, n in seen.items() if text and n > 1)


if __name__ == "__main__":
    sys.exit(main())
