"""Drawing workflows: Mermaid text, DOT source, and real SVG/PNG files from Graphviz's `dot`."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Optional

import networkx as nx
import pytest

from kaizen.errors import RenderError
from kaizen.nodes.base import Node, Port
from kaizen.render import (
    render_workflow,
    workflow_svg,
    workflow_to_dot,
    workflow_to_mermaid,
)
from kaizen.text import type_name as type_label
from kaizen.workflow import Connection, Workflow, WorkflowBuilder

SVG = "{http://www.w3.org/2000/svg}"


class Source(Node):
    input_ports = (Port("topic", str),)
    output_ports = (Port("text", str), Port("score", float))

    def run(self, **inputs: Any) -> dict[str, Any]:
        return {"text": inputs["topic"], "score": 1.0}


class Sink(Node):
    input_ports = (
        Port("text", str),
        Port("score", float, default=0.0),
        Port("tags", list[str]),
        Port("limit", Optional[int], default=None),  # noqa: UP045 - the label shows Optional
    )
    output_ports = (Port("result", dict[str, int]),)

    def run(self, **inputs: Any) -> dict[str, Any]:
        return {"result": {}}


class Grouped(Sink):
    def __init__(self, node_id: str, group: str) -> None:
        super().__init__(node_id)
        self.group = group


def hand_made(
    nodes: list[Node],
    connections: list[Connection],
    *,
    bound: dict[str, dict[str, Any]] | None = None,
    name: str = "hand",
) -> Workflow:
    graph = nx.DiGraph()
    for n in nodes:
        graph.add_node(n.id)
    graph.add_edges_from((c.source, c.target) for c in connections)
    by_id = {n.id: n for n in nodes}
    ordered = {node_id: by_id[node_id] for node_id in nx.topological_sort(graph)}
    return Workflow(name, ordered, tuple(connections), bound_inputs=bound)


WEIRD_ID = 'round1/b "quoted" <x> & |pipe| [1] {2} #3;'


@pytest.fixture
def workflow() -> Workflow:
    return hand_made(
        [Source("a"), Sink(WEIRD_ID), Sink("round1/c")],
        [
            Connection("a", "text", WEIRD_ID, "text"),
            Connection("a", "score", WEIRD_ID, "score"),
            Connection("a", "text", "round1/c", "text"),
        ],
        bound={"round1/c": {"tags": ["x"]}},
    )


# --------------------------------------------------------------------------- helpers


def test_type_labels_are_short_and_readable() -> None:
    assert type_label(str) == "str"
    assert type_label(Any) == "Any"
    assert type_label(list[str]) == "list[str]"
    assert type_label(dict[str, int]) == "dict[str, int]"
    assert type_label(Optional[int]) == "int | None"  # noqa: UP045
    assert type_label(int | None) == "int | None"


# --------------------------------------------------------------------------- Mermaid


def test_mermaid_is_a_left_to_right_flowchart_with_every_node_port_and_mapping(
    workflow: Workflow,
) -> None:
    text = workflow_to_mermaid(workflow)
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    node_lines = [ln for ln in lines if re.match(r"\s*n\d+\[\"", ln)]
    assert len(node_lines) == 3
    source_line = next(ln for ln in node_lines if "<b>a</b>" in ln)
    assert "Source" in source_line
    assert "in: topic: str" in source_line
    assert "out: text: str, score: float" in source_line
    sink_line = next(ln for ln in node_lines if "round1/c" in ln)
    assert "list#91;str#93;" in sink_line  # brackets escaped, so Mermaid keeps them as text
    edges = [ln for ln in lines if "-->" in ln]
    assert len(edges) == 2  # one per connected node pair
    assert any("text→text<br/>score→score" in e for e in edges)
    params = [ln for ln in lines if "-.->" in ln]
    assert len(params) == 2
    assert any('"topic"' in p for p in params)


def test_mermaid_escapes_any_node_id_so_quotes_and_brackets_never_break_the_syntax(
    workflow: Workflow,
) -> None:
    text = workflow_to_mermaid(workflow)
    for line in text.splitlines()[1:]:
        stripped = line.strip()
        if stripped == "end":
            continue
        # every quoted label is balanced: raw quotes only delimit labels
        assert stripped.count('"') % 2 == 0, line
        for label in re.findall(r'"([^"]*)"', stripped):
            for ch in "[]{}|":
                assert ch not in label, (ch, line)
    assert "#quot;quoted#quot;" in text
    assert "#38;" in text  # &
    assert "#35;3#59;" in text  # "#3;"


def test_mermaid_groups_nodes_by_id_prefix_into_subgraphs(workflow: Workflow) -> None:
    lines = [ln.strip() for ln in workflow_to_mermaid(workflow).splitlines()]
    start = next(i for i, ln in enumerate(lines) if ln.startswith("subgraph"))
    assert '"round1"' in lines[start]
    end = lines.index("end", start)
    inside = "\n".join(lines[start:end])
    assert "round1/c" in inside
    assert "#quot;quoted#quot;" in inside
    assert "<b>a</b>" not in inside


# --------------------------------------------------------------------------- DOT


def test_dot_shows_ports_with_types_and_port_to_port_edges(workflow: Workflow) -> None:
    dot = workflow_to_dot(workflow)
    assert dot.startswith("digraph")
    assert "rankdir=LR" in dot
    assert "topic: str" in dot
    assert "text: str" in dot and "score: float" in dot
    assert "result: dict[str, int]" in dot
    assert "score: float ?" in dot  # optional input marked
    assert "tags = [&#x27;x&#x27;]" in dot or "tags = ['x']" in dot  # bound value shown
    edges = re.findall(r"(n\d+):out(\d+):e -> (n\d+):in(\d+):w \[label=\"([^\"]+)\"\]", dot)
    labels = sorted(e[4] for e in edges)
    assert labels == ["score→score", "text→text", "text→text"]
    # the edge leaves the output port row it names and enters the input row it names
    assert ("n0", "0", "n1", "0", "text→text") in edges
    assert ("n0", "1", "n1", "1", "score→score") in edges


def test_dot_draws_open_inputs_as_parameter_nodes(workflow: Workflow) -> None:
    dot = workflow_to_dot(workflow)
    assert re.search(r"p0 \[label=topic", dot)
    assert re.search(r"p0 -> n0:in0:w", dot)
    assert re.search(r"p1 -> n1:in2:w", dot)  # 'tags' is the third input of the sink


def test_dot_clusters_by_id_prefix_and_by_group_attribute() -> None:
    wf = hand_made(
        [
            Source("start"),
            Grouped("optimist", "debate/round1"),
            Grouped("critic", "debate/round1"),
            Sink("debate/round2/judge"),
        ],
        [
            Connection("start", "text", "optimist", "text"),
            Connection("start", "text", "critic", "text"),
            Connection("start", "text", "debate/round2/judge", "text"),
        ],
    )
    dot = workflow_to_dot(wf)
    clusters = re.findall(r"subgraph (cluster_\d+) \{\s*[^\n]*label=(\w+)", dot)
    assert [label for _, label in clusters] == ["debate", "round1", "round2"]
    round1 = dot.index("label=round1")
    round2 = dot.index("label=round2")
    assert round1 < dot.index("<B>optimist</B>") < round2
    assert round1 < dot.index("<B>critic</B>") < round2
    assert dot.index("<B>debate/round2/judge</B>") > round2
    assert dot.index("<B>start</B>") > dot.index("<B>debate/round2/judge</B>")  # not clustered


def test_dot_escapes_html_in_ids(workflow: Workflow) -> None:
    dot = workflow_to_dot(workflow)
    assert "&lt;x&gt; &amp; |pipe|" in dot
    assert "<x>" not in dot.split("tooltip")[0].replace("<<TABLE", "")


# --------------------------------------------------------------------------- real files


def _svg_texts(path_or_text: Path | str) -> str:
    root = (
        ET.parse(path_or_text).getroot()
        if isinstance(path_or_text, Path)
        else ET.fromstring(path_or_text)
    )
    return " ".join(t.text or "" for t in root.iter(f"{SVG}text"))


def test_render_writes_a_real_svg_with_every_node_id(workflow: Workflow, tmp_path: Path) -> None:
    path = render_workflow(workflow, tmp_path / "sub" / "graph.svg")
    assert path == tmp_path / "sub" / "graph.svg"
    texts = _svg_texts(path)
    for node_id in workflow.nodes:
        assert node_id in texts
    for label in ("text→text", "score→score", "topic", "round1"):
        assert label in texts


def test_render_png_and_pdf(workflow: Workflow, tmp_path: Path) -> None:
    png = workflow.render(tmp_path / "graph.PNG")
    assert png.read_bytes().startswith(b"\x89PNG")
    pdf = workflow.render(str(tmp_path / "graph.pdf"))
    assert pdf.read_bytes().startswith(b"%PDF")


def test_unknown_suffix_is_a_clear_error(workflow: Workflow, tmp_path: Path) -> None:
    with pytest.raises(RenderError, match=r"'\.jpeg'.*\.svg, \.png, \.pdf"):
        render_workflow(workflow, tmp_path / "graph.jpeg")
    with pytest.raises(RenderError, match="no suffix"):
        render_workflow(workflow, tmp_path / "graph")
    assert not list(tmp_path.iterdir())


def test_missing_dot_says_how_to_install_it(
    workflow: Workflow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` anywhere on PATH
    with pytest.raises(RenderError, match=r"apt-get install graphviz.*make setup"):
        render_workflow(workflow, tmp_path / "graph.svg")
    assert workflow_to_dot(workflow).startswith("digraph")  # text output still works


def test_jupyter_repr_is_svg(workflow: Workflow) -> None:
    svg = workflow._repr_svg_()
    assert svg == workflow_svg(workflow)
    assert "a" in _svg_texts(svg)
    assert workflow.to_mermaid() == workflow_to_mermaid(workflow)
    assert workflow.to_dot() == workflow_to_dot(workflow)


# --------------------------------------------------------------------------- builder-made


def shout(text: str, times: int = 1) -> str:
    return text.upper() * times


def count(text: str) -> int:
    return len(text)


def builder_workflow() -> Workflow:
    b = WorkflowBuilder("builder-made")
    b.add_node(shout, "loud")
    b.add_node(count, "stats/count")
    b.add_connection("loud", "result", "stats/count", "text")
    return b.build()


def test_builder_made_workflow_renders_everywhere(tmp_path: Path) -> None:
    wf = builder_workflow()
    mermaid = wf.to_mermaid()
    assert "<b>loud</b>" in mermaid and "FunctionNode" in mermaid
    assert "in: text: str, times: int" in mermaid
    assert '-->|"result→text"|' in mermaid
    assert 'subgraph g1["stats"]' in mermaid
    dot = wf.to_dot()
    assert "times: int ?" in dot
    assert "result: int" in dot
    assert "p0 [label=text" in dot  # the open input loud.text
    texts = _svg_texts(wf.render(tmp_path / "b.svg"))
    assert "loud" in texts and "stats/count" in texts and "result→text" in texts


def test_empty_workflow_renders() -> None:
    wf = WorkflowBuilder("empty").build()
    assert wf.to_mermaid() == "flowchart LR\n"
    ET.fromstring(wf._repr_svg_())
