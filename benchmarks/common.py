"""Shared harness for the benchmarks: timing, peer isolation, the common `main`, and the table.

Every bench measures cases; each case has one row per implementation ("kaizen", the peers, and
"python", the plain-Python floor). A row holds the median wall time over several repetitions after
warm-up, and optionally a per-unit figure (µs per node, per call, per signature). The table adds the
ratios (peer / Kaizen, Kaizen / floor) and checks Kaizen's row against the DESIGN.md target.

kailash-kaizen's import name is also `kaizen`, so it lives outside site-packages (the Makefile puts
it in `.bench-venv/kailash-kaizen`); benches measure it in a subprocess that puts that directory
first on `sys.path` (`run_worker`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
PEER_KAIZEN_DIR = Path(sys.prefix) / "kailash-kaizen"

KAIZEN = "kaizen"
FLOOR = "python"


@dataclass
class Row:
    """One implementation's figures for one case (`seconds` is None when it was skipped)."""

    case: str
    impl: str
    seconds: float | None = None
    per_unit_us: float | None = None
    reps: int = 0
    note: str = ""


@dataclass
class Target:
    """A DESIGN.md target checked on Kaizen's row of a case.

    `metric` is "seconds" (the wall-time median) or "per_unit_us"; PASS when value <= bound.
    """

    text: str
    bound: float
    metric: str = "per_unit_us"

    def verdict(self, row: Row) -> str:
        value = row.seconds if self.metric == "seconds" else row.per_unit_us
        if value is None:
            return "n/a"
        return "PASS" if value <= self.bound else "MISS"


@dataclass
class Report:
    """The rows of one bench, in order, plus the targets per case."""

    title: str
    unit: str = "µs/node"
    rows: list[Row] = field(default_factory=list)
    targets: dict[str, Target] = field(default_factory=dict)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def extend(self, rows: Iterable[Row]) -> None:
        self.rows.extend(rows)


def common_parser(description: str) -> argparse.ArgumentParser:
    """The options every bench takes (`make bench` passes them to each): `--quick`, `--json`,
    `--markdown`, `--parse-only`, and `--worker NAME` (internal: peer subprocess). A bench with
    options of its own adds them to this parser."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="few repetitions, small sizes")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None, help="also write the rows as JSON to this path")
    parser.add_argument("--markdown", default=None, help="also write the table as Markdown here")
    parser.add_argument(
        "--parse-only",
        action="store_true",
        help="print the options as JSON and exit, measuring nothing (tests/test_benchmarks.py)",
    )
    return parser


def parse_args(
    description: str,
    parser: argparse.ArgumentParser | None = None,
    argv: Sequence[str] | None = None,
) -> argparse.Namespace:
    """Parse the command line with `parser` (default: `common_parser(description)`); with
    `--parse-only`, print what was parsed as one JSON line and exit."""
    args = (parser or common_parser(description)).parse_args(argv)
    if args.parse_only:
        print(json.dumps(vars(args)), flush=True)
        raise SystemExit(0)
    return args


def quiet_peers() -> None:
    """Silence the peers' deprecation warnings and log chatter so the tables stay readable."""
    import logging

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)


# --- timing -----------------------------------------------------------------------------------


def _pick_reps(first: float, reps: int, budget: float) -> int:
    """Fewer repetitions for slow cases, so a slow peer cannot stretch the whole run."""
    if first <= 0:
        return reps
    return max(3, min(reps, int(budget / first)))


def measure(
    fn: Callable[[], Any], *, reps: int = 7, warmup: int = 1, budget: float = 8.0
) -> tuple[float, int]:
    """Median seconds of `fn()` over `reps` runs after `warmup` runs; returns (median, reps)."""
    first = 0.0
    for _ in range(max(warmup, 1)):
        start = time.perf_counter()
        fn()
        first = time.perf_counter() - start
    count = _pick_reps(first, reps, budget)
    times = []
    for _ in range(count):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), count


def measure_async(
    fn: Callable[[], Awaitable[Any]], *, reps: int = 7, warmup: int = 1, budget: float = 8.0
) -> tuple[float, int]:
    """`measure` for a coroutine function, all repetitions inside one event loop."""

    async def run_all() -> tuple[float, int]:
        first = 0.0
        for _ in range(max(warmup, 1)):
            start = time.perf_counter()
            await fn()
            first = time.perf_counter() - start
        count = _pick_reps(first, reps, budget)
        times = []
        for _ in range(count):
            start = time.perf_counter()
            await fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times), count

    return asyncio.run(run_all())


def timed_row(
    case: str,
    impl: str,
    fn: Callable[[], Any],
    *,
    units: int = 0,
    reps: int = 7,
    warmup: int = 1,
    budget: float = 8.0,
    is_async: bool = False,
    note: str = "",
    check: Callable[[Any], bool] | None = None,
) -> Row:
    """Measure `fn` (a callable, or a coroutine function with `is_async`) into a Row.

    `units` divides the median into `per_unit_us` (0: no per-unit figure). `check`, given the
    result of a first run, must return True, else the row is skipped as wrong (a fast wrong answer
    is no result). Any exception becomes a skipped row saying why, so one broken peer never stops
    a bench.
    """
    try:
        if check is not None:
            result = asyncio.run(fn()) if is_async else fn()
            if not check(result):
                return skipped(case, impl, f"wrong result: {str(result)[:80]}")
        if is_async:
            seconds, count = measure_async(fn, reps=reps, warmup=warmup, budget=budget)
        else:
            seconds, count = measure(fn, reps=reps, warmup=warmup, budget=budget)
    except Exception as exc:
        return skipped(case, impl, f"{type(exc).__name__}: {exc}")
    return Row(case, impl, seconds, seconds / units * 1e6 if units else None, count, note)


def skipped(case: str, impl: str, why: str) -> Row:
    first_line = why.strip().splitlines()[0] if why.strip() else "unknown reason"
    return Row(case, impl, None, None, 0, f"skipped: {first_line[:110]}")


def try_import(module: str) -> str | None:
    """None when `module` imports, else the reason it does not (for a skip note)."""
    try:
        __import__(module)
    except Exception as exc:
        return f"cannot import {module}: {type(exc).__name__}: {exc}"
    return None


# --- peer subprocesses --------------------------------------------------------------------------


def run_worker(
    script: str, worker: str, quick: bool, *, peer_kaizen: bool = False, timeout: float = 300
) -> list[Row]:
    """Run `script --worker NAME` in a fresh interpreter and read its rows (JSON on stdout).

    With `peer_kaizen`, kailash-kaizen's directory goes first on the path, so `import kaizen`
    there is the peer, not this repository.
    """
    env = dict(os.environ)
    if peer_kaizen:
        if not PEER_KAIZEN_DIR.is_dir():
            return [
                skipped("*", worker, f"{PEER_KAIZEN_DIR} missing: run `make .bench-venv/.deps`")
            ]
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(PEER_KAIZEN_DIR), env.get("PYTHONPATH")])
        )
    cmd = [sys.executable, script, "--worker", worker] + (["--quick"] if quick else [])
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd="/tmp", check=False
        )
    except subprocess.TimeoutExpired:
        return [skipped("*", worker, f"worker timed out after {timeout:.0f} s")]
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("ROWS "):
            return [Row(**raw) for raw in json.loads(line[5:])]
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return [skipped("*", worker, f"worker exited {proc.returncode}: {tail}")]


def worker_main(worker: Callable[[], list[Row]]) -> None:
    """Body of a `--worker` subprocess: print the rows as one JSON line, whatever happens."""
    try:
        rows = worker()
    except Exception as exc:
        traceback.print_exc()
        rows = [skipped("*", "worker", f"{type(exc).__name__}: {exc}")]
    print("ROWS " + json.dumps([asdict(row) for row in rows]), flush=True)


def merge_worker_rows(report: Report, rows: list[Row], cases: Iterable[str]) -> None:
    """Add a worker's rows; a whole-worker skip ("*") is repeated under every case."""
    for row in rows:
        if row.case == "*":
            for case in cases:
                report.add(Row(case, row.impl, None, None, 0, row.note))
        else:
            report.add(row)


def collect_workers(
    report: Report,
    script: str,
    workers: Iterable[str | tuple[str, bool]],
    quick: bool,
    cases: Iterable[str],
    *,
    timeout: float = 300,
) -> None:
    """Run each worker (a name, or `(name, peer_kaizen)`) in turn and merge its rows."""
    cases = tuple(cases)
    for worker in workers:
        name, peer = (worker, False) if isinstance(worker, str) else worker
        print(f"running {name} ...", flush=True)
        rows = run_worker(script, name, quick, peer_kaizen=peer, timeout=timeout)
        merge_worker_rows(report, rows, cases)


def sort_rows(report: Report, cases: Sequence[str], impl_order: Sequence[str]) -> None:
    """Order the rows by case, then by implementation; unknown ones go last, in their order."""
    case_rank = {case: i for i, case in enumerate(cases)}
    impl_rank = {impl: i for i, impl in enumerate(impl_order)}
    report.rows.sort(
        key=lambda r: (case_rank.get(r.case, len(case_rank)), impl_rank.get(r.impl, len(impl_rank)))
    )


def bench_main(
    doc: str,
    worker_rows: Callable[[str, bool], list[Row]],
    build_report: Callable[[bool], Report],
) -> None:
    """A bench's `main`: parse the options; a `--worker NAME` subprocess prints that worker's rows
    (`worker_rows(name, quick)`), otherwise the report `build_report(quick)` is printed.

    `doc` is the bench's module docstring, whose first line describes it in `--help`.
    """
    args = parse_args(doc.splitlines()[0])
    if args.worker:
        worker_main(lambda: worker_rows(args.worker, args.quick))
        return
    print_report(build_report(args.quick), args.json, args.markdown)


# --- output -----------------------------------------------------------------------------------


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def _fmt_number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or not denominator:
        return "-"
    value = numerator / denominator
    return f"{value:,.1f}x" if value >= 10 else f"{value:.2f}x"


def table_lines(report: Report) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the report's table (shared by the rich and the plain renderer)."""
    header = ["case", "impl", "median", report.unit, "vs kaizen", "vs floor", "target", "verdict"]
    by_case: dict[str, dict[str, Row]] = {}
    for row in report.rows:
        by_case.setdefault(row.case, {})[row.impl] = row
    cells = []
    for row in report.rows:
        ours = by_case[row.case].get(KAIZEN)
        floor = by_case[row.case].get(FLOOR)
        value_of = lambda r: r.per_unit_us if r.per_unit_us is not None else r.seconds  # noqa: E731
        vs_kaizen = (
            _ratio(value_of(row), value_of(ours))
            if ours and ours.seconds and row.impl not in (KAIZEN, FLOOR) and row.seconds
            else "-"
        )
        vs_floor = (
            _ratio(value_of(row), value_of(floor))
            if floor and floor.seconds and row.impl != FLOOR and row.seconds
            else "-"
        )
        target = report.targets.get(row.case) if row.impl == KAIZEN else None
        per_unit = _fmt_number(row.per_unit_us, 2 if (row.per_unit_us or 0) < 10 else 1)
        cells.append(
            [
                row.case,
                row.impl,
                _fmt_seconds(row.seconds) if row.seconds is not None else row.note or "-",
                per_unit,
                vs_kaizen,
                vs_floor,
                target.text if target else "",
                target.verdict(row) if target else "",
            ]
        )
    return header, cells


def print_report(
    report: Report, json_path: str | None = None, markdown_path: str | None = None
) -> None:
    """Print the table (rich when available, else aligned text), then the skip notes."""
    header, cells = table_lines(report)
    # drop the columns no row fills (no floor, no target) so the table stays narrow
    keep = [
        i
        for i, name in enumerate(header)
        if i < 3 or any(line[i] not in ("", "-") for line in cells)
    ]
    header = [header[i] for i in keep]
    cells = [[line[i] for i in keep] for line in cells]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = f", load {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"{report.title}\n  {stamp}; {machine}{load}; medians after warm-up")
    title = None
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        _print_plain(header, cells)
    else:
        table = Table(title=title)
        for name in header:
            table.add_column(name, justify="left" if name in ("case", "impl") else "right")
        previous = None
        for line in cells:
            if previous is not None and line[0] != previous:
                table.add_section()
            previous = line[0]
            style = {"PASS": "green", "MISS": "red"}.get(line[-1])
            table.add_row(*line[:-1], f"[{style}]{line[-1]}[/]" if style else line[-1])
        Console(width=160).print(table)
    notes = [r for r in report.rows if r.seconds is not None and r.note]
    for row in notes:
        print(f"  note: {row.case} / {row.impl}: {row.note}")
    print(flush=True)
    if json_path:
        Path(json_path).write_text(json.dumps([asdict(r) for r in report.rows], indent=1))
    if markdown_path:
        heading = f"{report.title} ({stamp}; {machine}{load})"
        Path(markdown_path).write_text(markdown_table(heading, header, cells, notes))


def markdown_table(
    heading: str, header: list[str], cells: list[list[str]], notes: list[Row]
) -> str:
    """The table as Markdown (for docs/benchmarks.md), skip reasons and notes included."""
    lines = [f"**{heading}**", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|")
    for line in cells:
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in line) + " |")
    if notes:
        lines.append("")
        lines += [f"- {row.case} / {row.impl}: {row.note}" for row in notes]
    return "\n".join(lines) + "\n"


def _print_plain(header: list[str], cells: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *cells, strict=False)]
    for line in [header, *cells]:
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=False)))
