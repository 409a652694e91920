"""The embedded model under concurrency: batched decoding against the serialised path, one run.

For 1, 2, 4 and 8 concurrent schema-constrained calls (``topic -> position: str, confidence:
float``, ``max_tokens`` 96, through `kaizen.llm.acomplete`, so the whole call path is measured)
it prints the median wall time and completion tokens per second of each path; the serialised
path is forced with ``kaizen.llm.embedded.model.BATCHING = False`` (as ``KAIZEN_LOCAL_BATCH=0``).
The ratio the target speaks of is "5 concurrent, batched" against "5 one after another".

Then grammar against unconstrained decoding, ms per generated token, for a short (24 tokens) and
a long (128 tokens) reply, on both paths: the serialised path applies the grammar to the whole
vocabulary at every token, the batched path checks the sampled token first.

    .venv/bin/python benchmarks/bench_local_model.py [--reps 3] [--quick]

Other engineers share this machine's two cores: figures move by tens of percent between runs;
compare the two paths within one run, and run it more than once.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from common import common_parser, parse_args

SCHEMA = {
    "type": "object",
    "properties": {"position": {"type": "string"}, "confidence": {"type": "number"}},
    "required": ["position", "confidence"],
    "additionalProperties": False,
}
# No maxLength: llama.cpp refuses a grammar that repeats a character rule thousands of times
# (a maxLength of 5000 did), and an unbounded string lets a reply run to max_tokens.
ESSAY = {"type": "object", "properties": {"essay": {"type": "string"}}, "required": ["essay"]}
TOPICS = [
    "Cities should ban cars",
    "Remote work is better than office work",
    "Homework should be abolished",
    "Nuclear power is the answer to climate change",
    "Social media does more harm than good",
    "Space exploration is worth its cost",
    "Universal basic income should be introduced",
    "Schools should teach programming",
]


def messages(i: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You take a position on a topic. Reply with JSON only."},
        {"role": "user", "content": f"topic: {TOPICS[i % len(TOPICS)]}"},
    ]


async def concurrent_calls(n: int) -> tuple[float, int]:
    from kaizen.llm import LOCAL_MODEL, acomplete

    started = time.perf_counter()
    replies = await asyncio.gather(
        *(
            acomplete(messages(i), model=LOCAL_MODEL, response_schema=SCHEMA, max_tokens=96)
            for i in range(n)
        )
    )
    return time.perf_counter() - started, sum(r.usage.completion_tokens for r in replies)


async def sequential_calls(n: int) -> tuple[float, int]:
    from kaizen.llm import LOCAL_MODEL, acomplete

    started, tokens = time.perf_counter(), 0
    for i in range(n):
        reply = await acomplete(
            messages(i), model=LOCAL_MODEL, response_schema=SCHEMA, max_tokens=96
        )
        tokens += reply.usage.completion_tokens
    return time.perf_counter() - started, tokens


def median_run(make: Any, reps: int) -> tuple[float, float]:
    """(median seconds, median tokens/s) over `reps` runs of the coroutine `make()`."""
    walls, rates = [], []
    for _ in range(reps):
        wall, tokens = asyncio.run(make())
        walls.append(wall)
        rates.append(tokens / wall)
    return statistics.median(walls), statistics.median(rates)


def per_token(grammar: bool, max_tokens: int, batched: bool) -> float:
    """ms per generated token of one call with (or without) a JSON grammar."""
    from kaizen.llm.embedded import model as local

    prompt = [{"role": "user", "content": "Write a long essay about the history of the bicycle."}]
    if batched:
        from llama_cpp.llama_grammar import json_schema_to_gbnf

        from kaizen.llm.embedded.batching import Request

        engine = local._engine()
        tokens, stops = engine.chat_prompt(prompt)
        gbnf = json_schema_to_gbnf(json.dumps(ESSAY)) if grammar else None
        started = time.perf_counter()
        done = engine.submit(Request(tokens, max_tokens, grammar=gbnf, stop=stops)).result()
        return (time.perf_counter() - started) * 1e3 / max(done.completion_tokens, 1)
    llama = local._model()
    options: dict[str, Any] = {"max_tokens": max_tokens, "temperature": 0.2}
    if grammar:
        options["response_format"] = {"type": "json_object", "schema": ESSAY}
    started = time.perf_counter()
    result = llama.create_chat_completion(messages=prompt, **options)
    count = int(result["usage"]["completion_tokens"])
    return (time.perf_counter() - started) * 1e3 / max(count, 1)


def main() -> int:
    description = (__doc__ or "").split("\n")[0]
    parser = common_parser(description)
    parser.add_argument("--reps", type=int, default=3, help="runs per figure (--quick: one)")
    parser.add_argument("--grammar", action="store_true", help="only the grammar-cost table")
    args = parse_args(description, parser)
    reps = 1 if args.quick else args.reps

    from kaizen.llm import LOCAL_MODEL, local_model_installed
    from kaizen.llm.embedded import model as local

    if not local_model_installed():
        # not a failure: `make bench` goes on to the next benchmark
        say("the embedded model is not installed (make setup): nothing measured")
        write_outputs(args.markdown, args.json)
        return 0
    say(f"embedded model {LOCAL_MODEL}: medians of {reps} run(s); load: {_load()}")
    for batched in (False, True):  # warm both paths: load weights, first-call costs
        local.BATCHING = batched
        asyncio.run(concurrent_calls(1))
    if not args.grammar:
        concurrency_table(local, reps)
    grammar_table(reps)
    say(f"\nload afterwards: {_load()}")
    write_outputs(args.markdown, args.json)
    return 0


# what this bench printed, and its figures by name: --markdown and --json write them
_LINES: list[str] = []
_FIGURES: dict[str, float] = {}


def say(line: str) -> None:
    print(line, flush=True)
    _LINES.append(line)


def write_outputs(markdown_path: str | None, json_path: str | None) -> None:
    if markdown_path:
        text = "\n".join(_LINES).strip("\n")
        Path(markdown_path).write_text(
            f"**{(__doc__ or '').splitlines()[0]}**\n\n```\n{text}\n```\n"
        )
    if json_path:
        Path(json_path).write_text(json.dumps(_FIGURES, indent=1))


def concurrency_table(local: Any, reps: int) -> None:
    say(f"\n{'calls':>5} {'path':<10} {'wall s':>8} {'tok/s':>8}")
    rates: dict[tuple[str, int], float] = {}
    for n in (1, 2, 4, 5, 8):
        for batched in (False, True):
            local.BATCHING = batched
            path = "batched" if batched else "serialised"
            wall, rate = median_run(lambda n=n: concurrent_calls(n), reps)
            rates[(path, n)] = rate
            _FIGURES[f"{n} concurrent, {path}: tokens/s"] = rate
            say(f"{n:>5} {path:<10} {wall:>8.2f} {rate:>8.1f}")
    local.BATCHING = True
    wall, one_by_one = median_run(lambda: sequential_calls(5), reps)
    ratio = rates[("batched", 5)] / one_by_one
    _FIGURES["5 concurrent batched / 5 one after another"] = ratio
    say(f"\n5 calls one after another (batched path): {wall:.2f} s, {one_by_one:.1f} tok/s")
    say(f"5 concurrent batched / 5 one after another: {ratio:.2f}x  (target >= 3x)")
    local.BATCHING = False
    wall, serial_one_by_one = median_run(lambda: sequential_calls(5), reps)
    say(f"5 calls one after another (serialised path): {wall:.2f} s, {serial_one_by_one:.1f} tok/s")


def grammar_table(reps: int) -> None:
    say(f"\n{'path':<10} {'length':>6} {'plain ms/tok':>12} {'grammar ms/tok':>14} {'ratio':>6}")
    for batched in (False, True):
        path = "batched" if batched else "serialised"
        for length in (24, 128):
            plain = statistics.median(per_token(False, length, batched) for _ in range(reps))
            constrained = statistics.median(per_token(True, length, batched) for _ in range(reps))
            _FIGURES[f"{path}, {length} tokens: grammar / plain ms per token"] = constrained / plain
            say(
                f"{path:<10} {length:>6} {plain:>12.1f} {constrained:>14.1f} "
                f"{constrained / plain:>6.2f}"
            )


def _load() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
