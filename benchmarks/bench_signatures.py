"""Signature benchmark: `kaizen.create_signature` beside `dspy.Signature`, on the same 20 specs.

Cases:
- parse+compile: a spec string to a signature with its pydantic input and output models (Kaizen:
  `create_signature(spec)` then `.input_model` and `.output_model`; DSPy: `dspy.Signature(spec)`,
  which builds its pydantic model class at once). Kaizen caches parsed specs and there is no public
  cache reset, so every repetition uses fresh field names (a repetition suffix) for both libraries:
  nothing is served from a cache.
- +json-schema: the same, plus Kaizen's output JSON Schema (`.output_schema`); DSPy has no
  equivalent step, so it is shown against DSPy's parse+compile.
- cached: the same spec again (Kaizen's cache hit; DSPy rebuilds every time).
Figures are µs per signature (median over repetitions of the 20 specs).

Run: `.bench-venv/bin/python benchmarks/bench_signatures.py [--quick]`.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    KAIZEN,
    Report,
    Row,
    bench_main,
    collect_workers,
    quiet_peers,
    skipped,
    sort_rows,
    timed_row,
    try_import,
)

# (inputs, outputs): simple, typed, generic, Literal, Optional, nested, unions
SPECS: tuple[tuple[str, str], ...] = (
    ("question", "answer"),
    ("question: str", "answer: str"),
    ("question: str", "answer: str, confidence: float"),
    ("context, question", "answer"),
    ("text: str", "summary: str, keywords: list[str]"),
    ("document: str", "entities: list[str], count: int"),
    ("query: str, k: int", "results: list[str]"),
    ("text", 'sentiment: Literal["positive", "negative", "neutral"]'),
    ("claim: str", 'verdict: Literal["true", "false"], confidence: float'),
    ("record: dict[str, int]", "total: int"),
    ("items: list[int]", "mean: float, maximum: int"),
    ("question: str, hint: Optional[str]", "answer: str"),
    ("name: str", "age: Optional[int]"),
    ("data: dict[str, list[int]]", "keys: list[str]"),
    ("question: str", "answer: str, sources: list[str], confidence: float"),
    ("a: int, b: int", "total: int"),
    ("text: str, language: str", "translation: str"),
    ("email: str", "is_spam: bool, reason: str"),
    ("matrix: list[list[float]]", "trace: float"),
    ("profile: dict[str, str]", "tags: list[str], score: float | None"),
)
CASES = ("parse+compile", "+json-schema", "cached")
WORKERS = ("kaizen", "dspy")
NO_SCHEMA = "DSPy has no schema step: its parse+compile figure"


def _suffix(side: str, tag: str) -> str:
    """Append `tag` to every field name of one side of a spec (types untouched)."""
    fields = []
    depth = 0
    current = ""
    for char in side:  # split on top-level commas only (types hold commas inside brackets)
        depth += char in "[("
        depth -= char in "])"
        if char == "," and depth == 0:
            fields.append(current)
            current = ""
        else:
            current += char
    fields.append(current)
    renamed = []
    for field in fields:
        name, colon, annotation = field.strip().partition(":")
        renamed.append(f"{name.strip()}{tag}{colon}{annotation}")
    return ", ".join(renamed)


def spec_batches(tag_prefix: str) -> Iterator[list[str]]:
    """Endless batches of the 20 specs, each batch with its own fresh field names."""
    for number in itertools.count():
        tag = f"_{tag_prefix}{number}"
        yield [f"{_suffix(left, tag)} -> {_suffix(right, tag)}" for left, right in SPECS]


def batch_runner(
    make: Callable[[str], Any], batches: Iterator[list[str]]
) -> Callable[[], list[Any]]:
    """A callable compiling the next fresh batch (the names are built before timing starts)."""
    prepared = [next(batches) for _ in range(64)]
    feed = iter(prepared)

    def run() -> list[Any]:
        return [make(spec) for spec in next(feed)]

    return run


def accepted(make: Callable[[str], Any]) -> tuple[list[int], list[str]]:
    """Indexes of the specs `make` accepts, and a note per rejected spec."""
    good, bad = [], []
    for index, (left, right) in enumerate(SPECS):
        spec = f"{left} -> {right}"
        try:
            make(spec)
        except Exception as exc:
            bad.append(f"{spec!r}: {type(exc).__name__}")
        else:
            good.append(index)
    return good, bad


def kaizen_rows(quick: bool) -> list[Row]:
    import kaizen

    def compile_models(spec: str) -> Any:
        sig = kaizen.create_signature(spec)
        sig.input_model  # noqa: B018 - building the pydantic models is the measured work
        sig.output_model  # noqa: B018
        return sig

    def compile_with_schema(spec: str) -> Any:
        sig = compile_models(spec)
        return sig.output_schema

    return library_rows(KAIZEN, compile_models, compile_with_schema, quick)


def dspy_rows(quick: bool) -> list[Row]:
    import dspy

    return library_rows("dspy", dspy.Signature, None, quick)


def library_rows(
    impl: str,
    compile_models: Callable[[str], Any],
    compile_with_schema: Callable[[str], Any] | None,
    quick: bool,
) -> list[Row]:
    good, bad = accepted(compile_models)
    rejected = f"rejects {len(bad)}/20: " + "; ".join(bad) if bad else ""
    if not good:
        return [skipped(case, impl, rejected) for case in CASES]
    reps = 5 if quick else 15

    def timed(case: str, fn: Callable[[], Any], note: str = "") -> Row:
        return timed_row(case, impl, fn, units=len(SPECS), reps=reps, warmup=2, note=note)

    rows = [timed("parse+compile", batch_runner(compile_models, spec_batches("p")), rejected)]
    if compile_with_schema is not None:
        rows.append(timed("+json-schema", batch_runner(compile_with_schema, spec_batches("s"))))
    same = next(spec_batches("c"))
    rows.append(timed("cached", lambda: [compile_models(spec) for spec in same]))
    return rows


def worker_rows(name: str, quick: bool) -> list[Row]:
    quiet_peers()
    missing = try_import("kaizen.signatures" if name == KAIZEN else name)
    if missing:
        return [skipped("*", name, missing)]
    return kaizen_rows(quick) if name == KAIZEN else dspy_rows(quick)


def build_report(quick: bool) -> Report:
    report = Report("bench_signatures: 20 specs, parse + compile", unit="µs/sig")
    collect_workers(report, __file__, WORKERS, quick, CASES)
    # DSPy has no schema step: compare Kaizen's +json-schema with DSPy's parse+compile
    dspy_compile = next(
        (r for r in report.rows if r.impl == "dspy" and r.case == "parse+compile"), None
    )
    if dspy_compile is not None and dspy_compile.seconds is not None:
        report.add(
            Row(
                "+json-schema", "dspy", dspy_compile.seconds, dspy_compile.per_unit_us, 0, NO_SCHEMA
            )
        )
    sort_rows(report, CASES, (KAIZEN,))
    return report


if __name__ == "__main__":
    bench_main(__doc__, worker_rows, build_report)
