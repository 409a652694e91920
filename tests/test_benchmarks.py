"""`make bench` runs every `benchmarks/bench_*.py` with the common flags: each one accepts them.

Nothing is measured here: `--parse-only` (benchmarks/common.py) parses the flags exactly as
`make bench` passes them, prints what it read and exits.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = sorted(BENCHMARKS.glob("bench_*.py"))
COMMON_FLAGS = ("--quick", "--json", "--markdown")


def run(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=BENCHMARKS.parent,
    )


def test_there_are_benchmarks() -> None:
    assert len(SCRIPTS) >= 5


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.stem)
def test_each_benchmark_takes_the_common_flags(script: Path, tmp_path: Path) -> None:
    shown = run(script, "--help")
    assert shown.returncode == 0, shown.stderr
    for flag in COMMON_FLAGS:
        assert flag in shown.stdout, f"{script.name} --help does not offer {flag}"
    markdown, rows = tmp_path / "table.md", tmp_path / "rows.json"
    parsed = run(
        script, "--quick", "--markdown", str(markdown), "--json", str(rows), "--parse-only"
    )
    assert parsed.returncode == 0, parsed.stderr
    options = json.loads(parsed.stdout.strip().splitlines()[-1])
    assert options["quick"] is True
    assert options["markdown"] == str(markdown) and options["json"] == str(rows)
    assert not markdown.exists() and not rows.exists()  # nothing ran


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.stem)
def test_an_unknown_flag_is_refused_by_name(script: Path) -> None:
    refused = run(script, "--no-such-flag", "--parse-only")
    assert refused.returncode == 2
    assert "--no-such-flag" in refused.stderr
