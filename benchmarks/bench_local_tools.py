"""Does the embedded model call the tools it needs? 15 small tasks, one agent with five tools.

Ten tasks need exactly one tool (arithmetic, a lookup in a directory the model cannot know, a
unit conversion); five need none (the answer is in the question). Every task runs through an
`Agent` with all five tools on the embedded model (the JSON tool protocol: one JSON object per
turn, constrained by a grammar), `--runs` times. Per task it records:

- correct tool use: the needed tool was called with the right arguments (numbers compared
  to 1e-6), and no other tool; for a task that needs none, no tool was called;
- correct answer: the final `answer` equals the expected one (numbers within 1 %, text
  case-insensitively);
- the agent's stop reason when it did not complete.

    .venv/bin/python benchmarks/bench_local_tools.py [--runs 3] [--model local/smollm2] [--verbose]

Sampled at the agent's default temperature: rates move between runs; `--runs 3` or more.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import common_parser, parse_args

DIRECTORY = {"ada": 4127, "grace": 3390, "linus": 5802, "barbara": 2264}


def multiply(a: float, b: float) -> float:
    """Multiply two numbers."""
    return a * b


def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


def km_to_miles(km: float) -> float:
    """Convert a distance in kilometres to miles."""
    return round(km * 0.621371, 3)


def celsius_to_fahrenheit(celsius: float) -> float:
    """Convert a temperature in degrees Celsius to degrees Fahrenheit."""
    return round(celsius * 9 / 5 + 32, 3)


def phone_extension(name: str) -> int:
    """The phone extension of a colleague in the company directory, by first name."""
    return DIRECTORY[name.strip().lower()]


TOOLS = [multiply, add, km_to_miles, celsius_to_fahrenheit, phone_extension]


@dataclass(frozen=True)
class Task:
    question: str
    answer: float | str
    tool: str | None = None  # the tool it needs, or None
    arguments: tuple[Any, ...] = ()  # the arguments that tool needs, in order


TASKS = [
    Task("What is 17 times 23?", 391, "multiply", (17, 23)),
    Task("What is 46 multiplied by 12?", 552, "multiply", (46, 12)),
    Task("What is 1234 plus 4321?", 5555, "add", (1234, 4321)),
    Task("Add 987 and 654.", 1641, "add", (987, 654)),
    Task("How many miles is 42 km?", 26.098, "km_to_miles", (42,)),
    Task("Convert 100 kilometres to miles.", 62.137, "km_to_miles", (100,)),
    Task("What is 37 degrees Celsius in Fahrenheit?", 98.6, "celsius_to_fahrenheit", (37,)),
    Task("Convert -40 C to Fahrenheit.", -40, "celsius_to_fahrenheit", (-40,)),
    Task("What is Ada's phone extension?", 4127, "phone_extension", ("ada",)),
    Task("Which extension does Linus have?", 5802, "phone_extension", ("linus",)),
    Task("Repeat the word banana.", "banana"),
    Task("What colour is the sky on a clear day? One word.", "blue"),
    Task("The answer is 7. What is the answer?", 7),
    Task("Say hello.", "hello"),
    Task("What is the first letter of the word 'kaizen'?", "k"),
]


def tool_use_correct(task: Task, calls: list[Any]) -> bool:
    if task.tool is None:
        return not calls
    if not calls or any(call.name != task.tool for call in calls):
        return False
    return any(_arguments_match(task.arguments, call.arguments) for call in calls)


def _arguments_match(expected: tuple[Any, ...], given: Any) -> bool:
    if not isinstance(given, dict) or len(given) != len(expected):
        return False
    for want, got in zip(expected, given.values(), strict=True):
        if isinstance(want, str):
            if str(got).strip().lower() != want:
                return False
        elif not isinstance(got, int | float) or not math.isclose(want, got, abs_tol=1e-6):
            return False
    return True


def answer_correct(task: Task, answer: Any) -> bool:
    if isinstance(task.answer, str):
        return str(answer).strip().strip(".!").lower() == task.answer
    try:
        value = float(str(answer).replace(",", "").strip().rstrip("."))
    except ValueError:
        return False
    return math.isclose(value, float(task.answer), rel_tol=0.01, abs_tol=1e-6)


def main() -> int:
    description = (__doc__ or "").split("\n")[0]
    parser = common_parser(description)
    parser.add_argument("--runs", type=int, default=3, help="runs of the 15 tasks (--quick: 1)")
    parser.add_argument("--model", default=None)
    parser.add_argument("--verbose", action="store_true", help="print every task's outcome")
    args = parse_args(description, parser)
    runs = 1 if args.quick else args.runs

    from kaizen import Agent
    from kaizen.llm import local_model_installed
    from kaizen.llm.embedded.weights import LOCAL_MODEL

    model = args.model or LOCAL_MODEL
    if model == LOCAL_MODEL and not local_model_installed():
        # not a failure: `make bench` goes on to the next benchmark
        say("the embedded model is not installed (make setup): nothing measured")
        write_outputs(args.markdown, args.json, {})
        return 0
    agent = Agent(
        "assistant",
        'question: str -> answer: str "the final answer, as short as possible"',
        {"model": model, "max_iterations": 4, "max_tokens": 120},
        tools=TOOLS,
    )
    tally: Counter[str] = Counter()
    stops: Counter[str] = Counter()
    started = time.perf_counter()
    for run in range(1, runs + 1):
        for task in TASKS:
            result = agent.execute(question=task.question)
            kind = "tool" if task.tool else "none"
            tally[f"{kind} tasks"] += 1
            used = tool_use_correct(task, result.tool_calls)
            right = result.success and answer_correct(task, result.data.get("answer"))
            tally[f"{kind} used right"] += used
            tally[f"{kind} answered right"] += right
            if not result.success:
                stops[str(result.stop_reason)] += 1
            if args.verbose:
                called = [(c.name, c.arguments) for c in result.tool_calls]
                answer = result.data.get("answer") if result.success else result.error
                say(
                    f"  {task.question[:40]:<40} calls={called} answer={answer!r:.60} "
                    f"tool use {'ok' if used else 'WRONG'}, answer {'ok' if right else 'WRONG'}"
                )
        print(f"run {run}/{runs} done", file=sys.stderr)
    elapsed = time.perf_counter() - started
    say(
        f"local tool use: {runs} runs of {len(TASKS)} tasks on {model} in {elapsed:.0f} s "
        f"({elapsed / (runs * len(TASKS)):.1f} s per task)"
    )
    say(f"  {'tasks':<26} {'correct tool use':>17} {'correct answer':>15}  target")
    figures: dict[str, float] = {}
    for kind, label in (("tool", "needing one tool"), ("none", "needing no tool")):
        n = tally[f"{kind} tasks"]
        used_rate, right_rate = tally[f"{kind} used right"] / n, tally[f"{kind} answered right"] / n
        figures[f"{label}: correct tool use"] = used_rate
        figures[f"{label}: correct answer"] = right_rate
        target = ">= 60 % tool use" if kind == "tool" else ""
        say(f"  {label:<26} {used_rate:>17.0%} {right_rate:>15.0%}  {target}")
    total = sum(tally[f"{k} tasks"] for k in ("tool", "none"))
    used_all = tally["tool used right"] + tally["none used right"]
    right_all = tally["tool answered right"] + tally["none answered right"]
    say(f"  {'all':<26} {used_all / total:>17.0%} {right_all / total:>15.0%}")
    if stops:
        say("  did not complete: " + ", ".join(f"{k} x{n}" for k, n in stops.most_common()))
    write_outputs(args.markdown, args.json, figures)
    return 0


_LINES: list[str] = []  # what this bench printed: --markdown writes it


def say(line: str) -> None:
    print(line, flush=True)
    _LINES.append(line)


def write_outputs(markdown: str | None, json_path: str | None, figures: dict[str, float]) -> None:
    if markdown:
        text = "\n".join(_LINES)
        Path(markdown).write_text(f"**{(__doc__ or '').splitlines()[0]}**\n\n```\n{text}\n```\n")
    if json_path:
        Path(json_path).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    sys.exit(main())
