"""Every Python example in docs/signatures.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "signatures.md"
_BLOCK = re.compile(r"^(```|~~~)python\n(.*?)^\1[ \t]*$", re.MULTILINE | re.DOTALL)
EXAMPLES = [match.group(2) for match in _BLOCK.finditer(DOC.read_text(encoding="utf-8"))]


def test_the_doc_has_examples() -> None:
    assert len(EXAMPLES) >= 8


@pytest.mark.parametrize("source", EXAMPLES, ids=[f"example{i}" for i in range(len(EXAMPLES))])
def test_doc_example_runs(source: str) -> None:
    exec(compile(source, str(DOC), "exec"), {"__name__": "signatures_doc_example"})
