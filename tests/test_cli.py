"""The `kaizen` command line: render, run and ask, in-process (CliRunner) and as a real program."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from kaizen.cli import app
from kaizen.cli.support import CliError, parse_field_options, parse_params, parse_value

KAIZEN = Path(sys.executable).parent / "kaizen"

FLOWS = textwrap.dedent(
    """
    from kaizen.workflow import WorkflowBuilder

    def fetch(topic: str) -> str:
        return f"notes on {topic}"

    def count(text: str) -> int:
        return len(text)

    def shout(text: str, times: int = 1) -> str:
        return text.upper() * times

    def boom(text: str) -> str:
        raise ValueError("kaboom: " + text)

    def pipeline():
        b = WorkflowBuilder("notes")
        b.add_node(fetch, "fetch")
        b.add_node(count, "stats/count")
        b.add_node(shout, "stats/shout")
        b.add_connection("fetch", "result", "stats/count", "text")
        b.add_connection("fetch", "result", "stats/shout", "text")
        return b

    builder = pipeline()
    workflow = builder.build()

    def failing():
        b = WorkflowBuilder("failing")
        b.add_node(fetch, "fetch")
        b.add_node(boom, "boom")
        b.add_node(count, "count")
        b.add_connection("fetch", "result", "boom", "text")
        b.add_connection("fetch", "result", "count", "text")
        return b

    def broken():
        b = WorkflowBuilder("broken")
        b.add_node(count, "count")
        b.add_node("NoSuchType", "x")
        b.add_connection("count", "nope", "ghost", "text")
        return b

    not_a_workflow = 42
    """
)


@pytest.fixture
def flows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module of example workflows in the current directory; returns its (unique) name."""
    name = f"flows_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(FLOWS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the loader may add the cwd
    return name


runner = CliRunner()


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


def svg_words(path: Path) -> str:
    return " ".join("".join(t.itertext()) for t in ET.parse(path).getroot().iter())


# --------------------------------------------------------------------------- render


@pytest.mark.parametrize("attr", ["pipeline", "builder", "workflow"])
def test_render_accepts_a_function_a_builder_or_a_workflow(
    flows: str, attr: str, tmp_path: Path
) -> None:
    result = invoke("render", f"{flows}:{attr}", "-o", "pics/graph.svg")
    assert result.exit_code == 0, result.output
    path = tmp_path / "pics" / "graph.svg"
    words = svg_words(path)
    for node_id in ("fetch", "stats/count", "stats/shout", "result→text"):
        assert node_id in words
    assert "wrote pics/graph.svg" in result.stderr


def test_render_accepts_a_file_path_and_text_formats(flows: str, tmp_path: Path) -> None:
    result = invoke("render", f"{tmp_path / flows}.py:pipeline", "-o", "g.mmd")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "g.mmd").read_text().startswith("flowchart LR")
    result = invoke("render", f"./{flows}.py:workflow", "--output", "g.dot")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "g.dot").read_text().startswith("digraph notes")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_colon_here", "write module:attr"),
        ("no_such_module_xyz:thing", "cannot import 'no_such_module_xyz'"),
        ("{flows}:missing", "has no attribute 'missing'"),
        ("{flows}:not_a_workflow", "is a int; expected a WorkflowBuilder"),
        ("missing_dir/nothing.py:x", "no such file"),
    ],
)
def test_render_reports_bad_targets_in_one_line(flows: str, target: str, message: str) -> None:
    result = invoke("render", target.format(flows=flows), "-o", "g.svg")
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stderr.startswith("error:")
    assert "Traceback" not in result.output


def test_render_of_an_invalid_workflow_lists_every_problem(flows: str) -> None:
    result = invoke("render", f"{flows}:broken", "-o", "g.svg")
    assert result.exit_code == 2
    assert "3 problem(s)" in result.stderr
    assert "unknown node type 'NoSuchType'" in result.stderr
    assert "unknown target node 'ghost'" in result.stderr
    assert "no output port 'nope'" in result.stderr


def test_render_to_an_unknown_suffix_fails_clearly(flows: str) -> None:
    result = invoke("render", f"{flows}:pipeline", "-o", "g.jpeg")
    assert result.exit_code == 2
    assert "use one of .svg, .png, .pdf" in result.stderr


# --------------------------------------------------------------------------- run


def test_run_prints_results_and_writes_pictures(flows: str, tmp_path: Path) -> None:
    result = invoke(
        "run", f"{flows}:pipeline", "--param", "topic=cats", "-p", "stats/shout.times=2"
    )
    assert result.exit_code == 0, result.output
    results = json.loads(result.stdout)
    assert results == {
        "fetch": {"result": "notes on cats"},
        "stats/count": {"result": 13},
        "stats/shout": {"result": "NOTES ON CATSNOTES ON CATS"},
    }
    out = tmp_path / "out"
    assert "fetch" in svg_words(out / "notes.svg")
    run_words = svg_words(out / "notes-run.svg")
    assert "stats/shout" in run_words and "completed" in run_words
    saved = json.loads((out / "notes-results.json").read_text())
    assert saved["results"] == results
    assert saved["status"] == "completed"
    assert set(saved["record"]["nodes"]) == {"fetch", "stats/count", "stats/shout"}
    assert "completed" in result.stderr


def test_run_out_option_moves_the_files(flows: str, tmp_path: Path) -> None:
    result = invoke("run", f"{flows}:workflow", "-p", "fetch.topic=x", "--out", "elsewhere")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == [
        "notes-results.json",
        "notes-run.svg",
        "notes.svg",
    ]


def test_a_failing_node_exits_1_with_one_line_and_still_draws_the_run(
    flows: str, tmp_path: Path
) -> None:
    result = invoke("run", f"{flows}:failing", "-p", "topic=cats")
    assert result.exit_code == 1
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert errors == ["error: node 'boom' failed on attempt 1: ValueError: kaboom: notes on cats"]
    assert result.stdout == ""
    run_svg = (tmp_path / "out" / "failing-run.svg").read_text()
    assert "boom" in run_svg and "#ef9a9a" in run_svg  # the failed colour


def test_keep_going_finishes_other_branches_and_exits_1(flows: str) -> None:
    result = invoke("run", f"{flows}:failing", "-p", "topic=cats", "--keep-going")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "fetch": {"result": "notes on cats"},
        "count": {"result": 13},
    }
    assert "failed" in result.stderr


def test_parameter_problems_exit_2_before_anything_runs(flows: str, tmp_path: Path) -> None:
    result = invoke("run", f"{flows}:pipeline", "-p", "nope=1")
    assert result.exit_code == 2
    assert "parameter 'nope'" in result.stderr
    assert not (tmp_path / "out").exists()
    result = invoke("run", f"{flows}:pipeline", "-p", "topic")
    assert result.exit_code == 2
    assert "write node.port=value or port=value" in result.stderr


def test_run_of_an_invalid_workflow_exits_2(flows: str) -> None:
    result = invoke("run", f"{flows}:broken")
    assert result.exit_code == 2
    assert "unknown node type 'NoSuchType'" in result.stderr


# --------------------------------------------------------------------------- option parsing


def test_parse_params_routes_node_ports_and_bare_ports() -> None:
    assert parse_params(["a.x=1", "a.y=hello", "top=[1, 2]", 'b.c.z="3"']) == {
        "a": {"x": 1, "y": "hello"},
        "top": [1, 2],
        "b.c": {"z": "3"},  # node ids may contain dots; the port is after the last one
    }
    assert parse_params(["s=a=b"]) == {"s": "a=b"}
    for bad in (["=1"], ["x"], ["a.=1"], [".p=1"], ["a.x=1", "a.x=2"], ["a=1", "a.x=2"]):
        with pytest.raises(CliError):
            parse_params(bad)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)
identifiers = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
node_ids = st.from_regex(r"[a-z][a-z0-9_/.-]{0,10}[a-z0-9]", fullmatch=True)


@given(st.dictionaries(node_ids, st.dictionaries(identifiers, json_values, min_size=1), max_size=4))
def test_param_values_round_trip_through_the_command_line(
    params: dict[str, dict[str, Any]],
) -> None:
    items = [
        f"{node}.{port}={json.dumps(value)}"
        for node, ports in params.items()
        for port, value in ports.items()
    ]
    assert parse_params(items) == params


@given(st.text())
def test_parse_value_keeps_unparseable_text(text: str) -> None:
    try:
        expected = json.loads(text)
    except ValueError:
        expected = text
    assert repr(parse_value(text)) == repr(expected)  # repr: NaN is not equal to itself


def test_parse_field_options_in_any_order() -> None:
    spec, fields = parse_field_options(
        ["--question", "What?", "q -> a", "--max-items=3", "--note", "--x"]
    )
    assert spec == "q -> a"
    assert fields == {"question": "What?", "max_items": "3", "note": "--x"}
    for bad in (["q -> a", "--question"], ["--question", "x"], ["a -> b", "c -> d"]):
        with pytest.raises(CliError):
            parse_field_options(bad)


# --------------------------------------------------------------------------- ask


def test_ask_prints_the_typed_result_as_json() -> None:
    from kaizen.testing import ScriptedModel

    model = ScriptedModel([{"answer": "machine learning", "confidence": "0.75"}])
    result = invoke(
        "ask",
        "question, count: int, tags: list[str] -> answer, confidence: float",
        "--question",
        "What is ML?",
        "--count",
        "3",
        "--tags",
        '["a", "b"]',
        "--model",
        model.model_name,
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"answer": "machine learning", "confidence": 0.75}
    prompt = json.dumps([m for call in model.calls for m in call.messages])
    assert "What is ML?" in prompt


def test_ask_keeps_text_fields_as_text_even_when_they_look_like_json() -> None:
    from kaizen.testing import ScriptedModel

    model = ScriptedModel([{"answer": "ok"}])
    result = invoke("ask", "question -> answer", "--question", "[1, 2]", "-m", model.model_name)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"answer": "ok"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["question -> -> answer", "--question", "x"], "empty output field"),
        (["question -> answer", "--questio", "x"], "questio"),
        (["--question", "x"], "missing the signature"),
    ],
)
def test_ask_errors_exit_2_with_a_clear_message(args: list[str], message: str) -> None:
    from kaizen.testing import ScriptedModel

    model = ScriptedModel([{"answer": "unused"}])
    result = invoke("ask", *args, "--model", model.model_name)
    assert result.exit_code == 2
    assert result.stderr.startswith("error:")
    assert message in result.stderr


def test_ask_reports_an_unparseable_reply_with_the_raw_text() -> None:
    from kaizen.testing import ScriptedModel

    model = ScriptedModel(["not json at all"] * 5)
    result = invoke("ask", "question -> answer, confidence: float", "--question", "x",
                    "--model", model.model_name)  # fmt: skip
    assert result.exit_code == 2
    assert "the model replied: not json at all" in result.stderr


# --------------------------------------------------------------------------- real program


def run_program(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KAIZEN), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_installed_kaizen_program_renders_and_runs(tmp_path: Path) -> None:
    (tmp_path / "example_flows.py").write_text(FLOWS)
    rendered = run_program("render", "example_flows:pipeline", "-o", "graph.svg", cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    assert "stats/count" in svg_words(tmp_path / "graph.svg")

    ran = run_program(
        "run", "example_flows:pipeline", "--param", "topic=dogs", "--no-progress", cwd=tmp_path
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["stats/count"] == {"result": 13}
    assert (tmp_path / "out" / "notes-run.svg").exists()

    failed = run_program("run", "example_flows:failing", "-p", "topic=x", cwd=tmp_path)
    assert failed.returncode == 1
    assert "error: node 'boom' failed" in failed.stderr

    invalid = run_program("run", "example_flows:broken", cwd=tmp_path)
    assert invalid.returncode == 2
    assert "NoSuchType" in invalid.stderr

    missing = run_program("render", "nowhere:thing", cwd=tmp_path)
    assert missing.returncode == 2
    assert "cannot import 'nowhere'" in missing.stderr


def test_python_dash_m_kaizen_is_the_same_program() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kaizen", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    for command in ("render", "run", "ask"):
        assert command in done.stdout


def test_help_does_not_load_the_engine() -> None:
    code = (
        "import sys\n"
        "from kaizen.cli import app\n"
        "heavy = [m for m in ('networkx', 'pydantic', 'litellm', 'kaizen.runtime') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == ""


def test_ask_with_a_tool_streams_the_text_and_shows_the_tool_call(flows: str) -> None:
    from kaizen.testing import ScriptedModel

    model = ScriptedModel(
        [
            ScriptedModel.reply("Counting the letters."),
            ScriptedModel.tool_call("count", {"text": "hello"}),
            {"answer": "five"},
        ]
    )
    result = invoke(
        "ask",
        "question -> answer",
        "--tool",
        f"{flows}:count",
        "--question",
        "How long is hello?",
        "--model",
        model.model_name,
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"answer": "five"}
    assert "Counting the letters." in result.stderr
    assert "count(text='hello')" in result.stderr and "→ 5" in result.stderr
    assert model.calls[0].tools == ["count", "complete"]


def test_ask_reports_an_agent_that_stopped_at_a_limit(flows: str) -> None:
    from kaizen.testing import ScriptedModel

    model = ScriptedModel(lambda messages: ScriptedModel.tool_call("count", {"text": "same"}))
    result = invoke(
        "ask",
        "question -> answer",
        "--tool",
        f"{flows}:count",
        "--question",
        "?",
        "--model",
        model.model_name,
        "--no-stream",
    )
    assert result.exit_code == 1
    assert "stopped (loop_detected)" in result.stderr


def test_run_shows_tool_calls_live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"agentflow_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            import kaizen
            from kaizen.testing import ScriptedModel

            def double(n: int) -> int:
                return 2 * n

            MODEL = ScriptedModel([ScriptedModel.tool_call("double", {"n": 21}), {"answer": "42"}])
            AGENT = kaizen.Agent("solver", "question -> answer", {"model": MODEL}, tools=[double])
            builder = kaizen.WorkflowBuilder("solve")
            builder.add_agent(AGENT, "solver")
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    result = invoke(
        "run", f"{name}:builder", "--param", "question=?", "--out", str(tmp_path / "out")
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["solver"]["answer"] == "42"
    assert "solver: double(n=21)" in result.stderr and "→ 42" in result.stderr
