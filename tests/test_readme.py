"""The README's Python examples run as written and print what their comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", README.read_text(), flags=re.S | re.M)


def test_every_python_block_runs_and_prints_what_its_comments_promise() -> None:
    blocks = python_blocks()
    assert len(blocks) >= 2
    for block in blocks:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, str(README), "exec"), {})
        printed = out.getvalue().splitlines()
        promised = [
            line.split("# ", 1)[1].split("  (", 1)[0].strip()
            for line in block.splitlines()
            if line.startswith("print(") and "# " in line
        ]
        assert printed == promised
