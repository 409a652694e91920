"""Drawing runs: the status-coloured graph, the timeline SVG, and the composed run picture."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaizen.errors import NodeExecutionError, RenderError
from kaizen.render import render_run, run_svg, run_to_dot, timeline_svg
from kaizen.render.timeline import STATUS_COLORS, format_duration
from kaizen.runtime import LocalRuntime, NodeRun, NodeStatus, RunRecord, RunStatus
from kaizen.workflow import Workflow, WorkflowBuilder

SVG = "{http://www.w3.org/2000/svg}"
T0 = 1_700_000_000.0


def first(text: str) -> str:
    return text


def second(text: str) -> str:
    return text + "!"


def third(text: str) -> str:
    return text + "?"


def fourth(text: str) -> str:
    return text + "."


def fifth(text: str) -> str:
    return text


def five_nodes() -> Workflow:
    b = WorkflowBuilder("five")
    for fn, node_id in [(first, "a"), (second, "b"), (third, "c"), (fourth, "d"), (fifth, "e")]:
        b.add_node(fn, node_id)
    b.add_connection("a", "b")
    b.add_connection("a", "c")
    b.add_connection("c", "d")
    b.add_connection("a", "e")
    return b.build()


def record_with_every_status() -> RunRecord:
    record = RunRecord("run-1", "five", T0, T0 + 2.5, RunStatus.FAILED)
    record.nodes = {
        "a": NodeRun("a", "FunctionNode", NodeStatus.COMPLETED, T0 + 0.01, T0 + 0.5, attempts=1),
        "b": NodeRun(
            "b",
            "FunctionNode",
            NodeStatus.FAILED,
            T0 + 0.5,
            T0 + 2.0,
            attempts=3,
            error="ValueError: the upstream service said <no> & gave up\nTraceback line",
        ),
        "c": NodeRun(
            "c",
            "FunctionNode",
            NodeStatus.SKIPPED,
            None,
            T0 + 2.0,
            skip_reason="its input 'text' comes from failed node 'b'",
        ),
        "d": NodeRun("d", "FunctionNode", NodeStatus.CANCELLED, T0 + 0.6, T0 + 2.1, attempts=1),
        "e": NodeRun("e", "FunctionNode", NodeStatus.PENDING),
    }
    return record


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg.encode("utf-8"))


def texts(root: ET.Element) -> str:
    return " ".join("".join(t.itertext()) for t in root.iter(f"{SVG}text"))


# --------------------------------------------------------------------------- run graph


def test_run_dot_paints_each_node_by_status_and_adds_facts() -> None:
    dot = run_to_dot(five_nodes(), record_with_every_status())
    lines = dot.splitlines()
    expected = {
        "a": NodeStatus.COMPLETED,
        "b": NodeStatus.FAILED,
        "c": NodeStatus.SKIPPED,
        "d": NodeStatus.CANCELLED,
        "e": NodeStatus.PENDING,
    }
    order = five_nodes().order
    for node_id, status in expected.items():
        dot_id = f"n{order.index(node_id)}"
        line = next(ln for ln in lines if ln.strip().startswith(f"{dot_id} [label="))
        color = STATUS_COLORS[status]
        assert f'fillcolor="{color.fill}"' in line, node_id
        assert f'color="{color.stroke}"' in line, node_id
        assert ("dashed" in line) == (status is NodeStatus.SKIPPED), node_id
    assert "completed · 490.0 ms" in dot
    assert "failed · 1.50 s · 3 attempts" in dot
    assert "ValueError: the upstream service said &lt;no&gt; &amp; gave up" in dot
    assert "Traceback line" not in dot  # errors are shortened to their first line
    assert "skipped: its input" in dot
    assert "five: failed in 2.50 s" in dot


def test_run_dot_treats_nodes_missing_from_the_record_as_pending() -> None:
    record = RunRecord("run-2", "five", T0)
    dot = run_to_dot(five_nodes(), record)
    assert dot.count(f'fillcolor="{STATUS_COLORS[NodeStatus.PENDING].fill}"') == 5
    assert "five: running" in dot


# --------------------------------------------------------------------------- timeline


def test_timeline_is_valid_svg_with_one_bar_per_node_and_status_colours() -> None:
    record = record_with_every_status()
    root = parse(timeline_svg(record))
    assert root.tag == f"{SVG}svg"
    groups = [g for g in root.iter(f"{SVG}g") if g.get("class") == "node-run"]
    assert [g.get("data-node") for g in groups] == ["a", "b", "d", "c", "e"]  # by start time
    for g in groups:
        status = NodeStatus(g.get("data-status"))
        rect = g.find(f"{SVG}rect")
        assert rect is not None
        assert rect.get("fill") == STATUS_COLORS[status].fill
        assert rect.get("stroke") == STATUS_COLORS[status].stroke
        title = g.find(f"{SVG}title")
        assert title is not None and g.get("data-node") in (title.text or "")
    bars = {g.get("data-node"): g.find(f"{SVG}rect") for g in groups}
    width = {k: float(r.get("width", 0)) for k, r in bars.items() if r is not None}
    assert width["b"] > width["a"] * 2  # 1.5 s against 0.49 s
    x = {k: float(r.get("x", 0)) for k, r in bars.items() if r is not None}
    assert x["a"] < x["b"] < x["c"]  # b starts when a ends; c was skipped when b failed
    assert bars["c"] is not None and bars["c"].get("stroke-dasharray")
    words = texts(root)
    for node_id in "abcde":
        assert node_id in words
    assert "×3" in words and "×3 attempts" in words
    assert "0 s" in words and "1 s" in words and "2 s" in words  # ticks in seconds
    assert "skipped: its input" in words
    assert "run five: failed in 2.50 s" in words
    full_error = "".join(bars_title for bars_title in root.itertext())
    assert "Traceback line" in full_error  # the tooltip keeps the whole error


def test_timeline_ticks_in_milliseconds_for_short_runs() -> None:
    record = RunRecord("r", "quick", T0, T0 + 0.012, RunStatus.COMPLETED)
    record.nodes = {"x": NodeRun("x", "N", NodeStatus.COMPLETED, T0 + 0.001, T0 + 0.011, 1)}
    words = texts(parse(timeline_svg(record)))
    assert "0 ms" in words and "10 ms" in words
    assert "10.0 ms" in words  # the bar's duration


def test_timeline_of_a_run_with_no_nodes_is_still_valid() -> None:
    parse(timeline_svg(RunRecord("r", "nothing", T0)))


@settings(max_examples=60, deadline=None)
@given(
    spans=st.lists(
        st.tuples(
            st.floats(0, 1000, allow_nan=False),
            st.floats(0, 1000, allow_nan=False),
            st.sampled_from(list(NodeStatus)),
            st.integers(0, 5),
        ),
        max_size=8,
    ),
    node_id=st.text(max_size=30).filter(lambda s: "\x00" not in s),
)
def test_timeline_is_valid_svg_for_any_record(
    spans: list[tuple[float, float, NodeStatus, int]], node_id: str
) -> None:
    record = RunRecord("r", node_id, T0)
    for i, (start, length, status, attempts) in enumerate(spans):
        started = None if status in (NodeStatus.PENDING, NodeStatus.SKIPPED) else T0 + start
        finished = None if started is None else started + length
        key = f"{node_id}{i}"
        record.nodes[key] = NodeRun(key, "N", status, started, finished, attempts)
    try:
        root = parse(timeline_svg(record))
    except ET.ParseError as exc:
        # XML 1.0 cannot carry some control characters at all; anything else must parse
        assert any(ord(c) < 32 and c not in "\t\n\r" for c in node_id), exc
        return
    for rect in root.iter(f"{SVG}rect"):
        assert float(rect.get("width", "0")) >= 0


def test_format_duration() -> None:
    assert format_duration(0.0000042) == "4 µs"
    assert format_duration(0.0123) == "12.3 ms"
    assert format_duration(2.413) == "2.41 s"


# --------------------------------------------------------------------------- composed picture


def test_run_picture_stacks_graph_above_timeline(tmp_path: Path) -> None:
    wf = five_nodes()
    record = record_with_every_status()
    path = render_run(record, tmp_path / "deep" / "run.svg", workflow=wf)
    root = ET.parse(path).getroot()
    nested = root.findall(f"{SVG}svg")
    assert len(nested) == 2
    graph, timeline = nested
    assert float(graph.get("y", "-1")) == 0
    assert float(timeline.get("y", "0")) >= float(graph.get("height", "0"))
    assert (
        float(root.get("height", "0"))
        >= float(timeline.get("y", "0")) + float(timeline.get("height", "0")) - 1
    )
    document = path.read_text()
    for status in ("completed", "failed", "skipped", "cancelled", "pending"):
        color = STATUS_COLORS[NodeStatus(status)]
        assert color.fill in document, status
    words = texts(root)
    for node_id in "abcde":
        assert re.search(rf"\b{node_id}\b", words)


def test_record_render_and_jupyter_repr(tmp_path: Path) -> None:
    record = record_with_every_status()
    alone = record.render(tmp_path / "timeline-only.svg")
    root = ET.parse(alone).getroot()
    assert len(root.findall(f"{SVG}svg")) == 1  # no workflow given: the timeline alone
    assert parse(record._repr_svg_()).tag == f"{SVG}svg"
    with_graph = record.render(tmp_path / "both.svg", workflow=five_nodes())
    assert len(ET.parse(with_graph).getroot().findall(f"{SVG}svg")) == 2
    assert run_svg(record) == alone.read_text()


def test_run_picture_must_be_svg(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match=r"run pictures are SVG"):
        render_run(record_with_every_status(), tmp_path / "run.png")


# --------------------------------------------------------------------------- real runs


def ok(text: str) -> str:
    return text


def explode(text: str) -> str:
    raise ValueError(f"cannot handle {text!r}")


def after(text: str) -> str:
    return text


def real_run_workflow() -> Workflow:
    b = WorkflowBuilder("real")
    b.add_node(ok, "start")
    b.add_node(explode, "explode", retries=1)
    b.add_node(after, "after")
    b.add_node(ok, "side")
    b.add_connection("start", "explode")
    b.add_connection("explode", "after")
    b.add_connection("start", "side")
    return b.build()


def test_a_real_run_with_failure_renders_with_its_statuses(tmp_path: Path) -> None:
    wf = real_run_workflow()
    runtime = LocalRuntime(failure_policy="continue")
    _, run_id = runtime.execute(wf, {"text": "x"})
    record = runtime.get_record(run_id)
    assert record.nodes["explode"].status is NodeStatus.FAILED
    path = record.render(tmp_path / "run.svg", workflow=wf)
    document = path.read_text()
    root = ET.fromstring(document)
    words = texts(root)
    for node_id in wf.nodes:
        assert node_id in words
    assert "2 attempts" in words and "ValueError" in words
    for status in (NodeStatus.COMPLETED, NodeStatus.FAILED, NodeStatus.SKIPPED):
        assert STATUS_COLORS[status].fill in document


def test_a_fail_fast_run_still_leaves_a_drawable_record(tmp_path: Path) -> None:
    wf = real_run_workflow()
    runtime = LocalRuntime()
    with pytest.raises(NodeExecutionError):
        runtime.execute(wf, {"text": "x"}, run_id="ff")
    path = render_run(runtime.get_record("ff"), tmp_path / "ff.svg", wf)
    assert "explode" in texts(ET.parse(path).getroot())


def test_tool_calls_are_drawn_inside_their_agents_bar() -> None:
    from kaizen.runtime.record import ToolCallRecord

    record = RunRecord("r", "tools", T0, T0 + 2.0, RunStatus.COMPLETED)
    agent = NodeRun("agent", "AgentNode", NodeStatus.COMPLETED, T0, T0 + 2.0, attempts=1)
    agent.tool_calls = [
        ToolCallRecord("c1", "search", {"q": "x"}, output="found", started=T0 + 0.5, duration=0.5),
        ToolCallRecord(
            "c2",
            "fetch",
            {"url": "u"},
            error="tool 'fetch' raised",
            started=T0 + 1.0,
            duration=0.25,
        ),
    ]
    record.nodes = {"agent": agent}
    root = parse(timeline_svg(record))
    [group] = [g for g in root.iter(f"{SVG}g") if g.get("class") == "node-run"]
    bar = group.find(f"{SVG}rect")
    assert bar is not None
    strips = [r for r in group.iter(f"{SVG}rect") if r.get("class") == "tool-call"]
    assert [s.get("data-tool") for s in strips] == ["search", "fetch"]
    bar_x, bar_w = float(bar.get("x", 0)), float(bar.get("width", 0))
    for strip, (start, length) in zip(strips, [(0.5, 0.5), (1.0, 0.25)], strict=True):
        x, w = float(strip.get("x", 0)), float(strip.get("width", 0))
        assert bar_x <= x and x + w <= bar_x + bar_w + 0.1  # inside the agent's bar
        assert abs((x - bar_x) / bar_w - start / 2.0) < 0.01
        assert abs(w / bar_w - length / 2.0) < 0.01
    assert strips[0].get("fill") != strips[1].get("fill")  # a failed call looks different
    tips = [s.find(f"{SVG}title") for s in strips]
    assert "search" in (tips[0].text or "") and "found" in (tips[0].text or "")
    assert "tool 'fetch' raised" in (tips[1].text or "")
    assert "2 tool calls" in texts(root)


def test_tool_calls_that_overlap_are_stacked_in_lanes() -> None:
    from kaizen.runtime.record import ToolCallRecord

    record = RunRecord("r", "lanes", T0, T0 + 1.0, RunStatus.COMPLETED)
    agent = NodeRun("agent", "AgentNode", NodeStatus.COMPLETED, T0, T0 + 1.0, attempts=1)
    agent.tool_calls = [  # two at once, then one after both
        ToolCallRecord("c1", "a", {}, output="1", started=T0 + 0.1, duration=0.4),
        ToolCallRecord("c2", "b", {}, output="2", started=T0 + 0.2, duration=0.4),
        ToolCallRecord("c3", "c", {}, output="3", started=T0 + 0.7, duration=0.1),
    ]
    record.nodes = {"agent": agent}
    root = parse(timeline_svg(record))
    strips = {
        r.get("data-tool"): r for r in root.iter(f"{SVG}rect") if r.get("class") == "tool-call"
    }
    y = {name: float(strip.get("y", 0)) for name, strip in strips.items()}
    assert y["a"] != y["b"]  # overlapping calls never hide each other
    assert y["c"] == y["a"]  # a later call reuses the first lane


def test_timeline_draws_a_model_calls_queue_apart_from_its_generation() -> None:
    from kaizen.render.timeline import GENERATING_COLOR
    from kaizen.runtime.record import ModelCallSpan

    node = NodeRun("voter", "AgentNode", NodeStatus.COMPLETED, T0, T0 + 3.0, attempts=1)
    node.model_calls.append(ModelCallSpan("local/smollm2", T0 + 0.1, T0 + 2.9, queue_time=2.0))
    record = RunRecord("r", "queued", T0, T0 + 3.0, RunStatus.COMPLETED, {"voter": node})
    root = parse(timeline_svg(record))
    calls = [g for g in root.iter(f"{SVG}g") if g.get("class") == "model-call"]
    assert len(calls) == 1
    rects = {r.get("class"): r for r in calls[0].iter(f"{SVG}rect")}
    queued, generating = rects["queued"], rects["generating"]
    assert queued.get("fill") != generating.get("fill") == GENERATING_COLOR.fill
    assert float(queued.get("x", 0)) < float(generating.get("x", 0))
    assert float(queued.get("width", 0)) > float(generating.get("width", 0)) * 2  # 2.0 s vs 0.8 s
    words = texts(root)
    assert "model: queued" in words and "model: generating" in words
    assert "queued 2.00 s" in words  # the bar's note says how long it waited


def test_recorder_keeps_each_model_calls_queue_time() -> None:
    from types import SimpleNamespace

    from kaizen.moments import ModelCallFinished
    from kaizen.runtime.record import Usage
    from kaizen.runtime.recorder import Recorder

    record = RunRecord("r", "w", T0, nodes={"n": NodeRun("n", "AgentNode")})
    recorder = Recorder(record)
    reply = SimpleNamespace(queue_time=1.5)
    recorder.on_model_call_finish(
        ModelCallFinished("r", "n", "local/smollm2", Usage(calls=1), 2.0, reply, None)
    )
    (span,) = record.nodes["n"].model_calls
    assert span.queue_time == 1.5
    assert span.generation_time == pytest.approx(0.5)
    assert span.finished - span.started == pytest.approx(2.0)
