"""The suite's own rules (tests/conftest.py): under ``CI=true`` a `pytest.importorskip` of a
missing dependency fails instead of skipping; on a developer's machine it skips; ordinary skips
stay skips everywhere."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

PROBE = """
import pytest

def test_needs_a_missing_module():
    pytest.importorskip("kaizen_no_such_module")

def test_skips_on_purpose():
    pytest.skip("not this time")
"""
WHOLE_FILE = """
import pytest

pytest.importorskip("kaizen_no_such_module")

def test_never_collected():
    pass
"""


def outcomes(folder: Path, ci: str) -> str:
    env = {**os.environ, "CI": ci}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:randomly", "-p",
         "no:cacheprovider", "--continue-on-collection-errors", str(folder)],
        capture_output=True, text=True, env=env, cwd=folder, timeout=120,
    )  # fmt: skip
    return done.stdout


@pytest.mark.slow  # two pytest runs in subprocesses
def test_a_missing_dependency_fails_under_ci_and_skips_elsewhere(tmp_path: Path) -> None:
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_probe.py").write_text(PROBE)
    (tmp_path / "test_whole_file.py").write_text(WHOLE_FILE)

    in_ci = outcomes(tmp_path, "true")
    assert "1 failed, 1 skipped, 1 error" in in_ci, in_ci
    assert "FAILED test_probe.py::test_needs_a_missing_module" in in_ci
    assert "ERROR test_whole_file.py" in in_ci
    assert "but CI is set" in in_ci

    elsewhere = outcomes(tmp_path, "")
    assert "3 skipped" in elsewhere and "failed" not in elsewhere, elsewhere


def test_hooks_in_tests_take_the_event_not_keyword_arguments() -> None:
    """The keyword-argument hook form is deprecated: only its own adapter test writes hooks
    that way (tests/test_hooks_keyword_form.py); every other test uses the typed events."""
    import ast

    from kaizen.moments import MOMENTS

    names = {f"on_{moment.moment}" for moment in MOMENTS}
    offenders = []
    for path in sorted(HERE.glob("test_*.py")):
        if path.name == "test_hooks_keyword_form.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name in names:
                positional = [a for a in (*node.args.posonlyargs, *node.args.args)][1:]
                if not positional and node.args.vararg is None:
                    offenders.append(f"{path.name}:{node.lineno} {node.name}")
    assert not offenders, "hooks in the deprecated keyword form: " + ", ".join(offenders)
