"""A library never changes the host program's logging (issue 21 item 9).

Kaizen imports its optional dependencies lazily; some configure the root logger when imported
(wordllama calls `logging.basicConfig(level=INFO)`, after which every model call printed
LiteLLM's INFO lines). Each test runs one lazy import point the way a user reaches it, in a fresh
interpreter whose logging is unconfigured, and checks the root logger's handlers and level
afterwards.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import kaizen
from kaizen.logs import host_logging_kept

CHECK = textwrap.dedent(
    """
    import json, logging, sys
    root = logging.getLogger()
    def state():
        return [[type(h).__name__ for h in root.handlers], root.level, logging.root.manager.disable]
    before = state()
    {body}
    print("STATE " + json.dumps([before, state()]))
    """
)

WORDLLAMA = """
from kaizen.store.memory import Memory
from kaizen.testing import ScriptedModel
import kaizen
memory = Memory("notes", provider="vector_db", path=sys.argv[1])
memory.add("The user prefers bullet points in every summary")
assert memory.search("how should summaries look?", k=1)
agent = kaizen.create_agent("qa", "question -> answer", {"model": ScriptedModel([{"answer": "a"}])})
agent.execute(question="q")
"""
LITELLM = """
from kaizen.llm import complete
from kaizen.llm.litellm_adapter import load_litellm
from kaizen.testing import ScriptedModel
load_litellm()
complete([{"role": "user", "content": "hi"}], model=ScriptedModel(["hello"]))
"""
MCP = """
from kaizen.mcp import MCPServer
with MCPServer.stdio(sys.executable, ["-m", "kaizen.testing.mcp_server"]) as server:
    assert server.list_tools()
"""
OPENTELEMETRY = """
from kaizen.observe.telemetry import TracingHook
TracingHook()
"""
RAY = """
import kaizen
from kaizen.runtime.ray import RayRuntime
with RayRuntime(num_cpus=0.25, init_options={"num_cpus": 1}) as runtime:
    workflow = kaizen.WorkflowBuilder("w")
    workflow.add_node("ConstantNode", "c", {"value": 1})
    results, _ = runtime.execute(workflow.build())
    assert results["c"]["value"] == 1
"""

CASES = {
    "wordllama": ("wordllama", WORDLLAMA),
    "litellm": ("litellm", LITELLM),
    "mcp": ("mcp", MCP),
    "opentelemetry": ("opentelemetry", OPENTELEMETRY),
    "ray": ("ray", RAY),
}


def run_checked(body: str, tmp_path: Path) -> tuple[list[object], list[object], str]:
    script = CHECK.format(body=textwrap.dedent(body).strip())
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "kaizen.db")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("STATE "))
    before, after = json.loads(line.removeprefix("STATE "))
    return before, after, done.stderr


@pytest.mark.parametrize("case", list(CASES))
def test_a_lazy_import_leaves_the_root_logger_as_it_was(case: str, tmp_path: Path) -> None:
    module, body = CASES[case]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    before, after, stderr = run_checked(body, tmp_path)
    assert after == before
    assert "LiteLLM" not in stderr and "INFO:" not in stderr


def test_the_host_program_keeps_its_own_configuration() -> None:
    import logging

    root = logging.getLogger()
    handler = logging.NullHandler()
    level, handlers = root.level, list(root.handlers)
    try:
        root.addHandler(handler)
        root.setLevel(logging.ERROR)
        with host_logging_kept():
            logging.basicConfig(level=logging.DEBUG, force=True)  # what a careless import does
        assert root.handlers == [*handlers, handler]
        assert root.level == logging.ERROR
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_importing_kaizen_configures_no_logging(tmp_path: Path) -> None:
    before, after, _ = run_checked("import kaizen\nkaizen.create_agent('a')", tmp_path)
    assert after == before
    assert kaizen.__name__ == "kaizen"
