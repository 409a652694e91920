"""Drawing workflows: Mermaid text, Graphviz DOT, and SVG/PNG/PDF files through Graphviz's `dot`.

Every node is drawn with its id, its type and its typed ports (inputs on the left, outputs on the
right); every edge joins the two ports it connects and is labelled `source_port→target_port`.
Inputs a run must supply (a workflow's open inputs) appear as small parameter nodes. Nodes are
grouped into clusters by a `group` attribute on the node object, else by the part of the node id
before its last "/" (`round1/optimist` sits in cluster `round1`); groups nest on "/".

Run pictures (a graph coloured by node status, a timeline) live in `kaizen.render.run` and
`kaizen.render.timeline`.
"""

from __future__ import annotations

import html
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from kaizen.errors import RenderError
from kaizen.text import shorten, type_name

if TYPE_CHECKING:
    from kaizen.nodes.base import Node, Port
    from kaizen.workflow.shape import NodeShape, PortShape, WorkflowShape
    from kaizen.workflow.workflow import Workflow

# what can be drawn: a built workflow, or its shape as a store keeps it
Drawable: TypeAlias = "Workflow | WorkflowShape"

#: Output formats `render_workflow` / `render_run` write, keyed by file suffix.
FORMATS: Mapping[str, str] = {".svg": "svg", ".png": "png", ".pdf": "pdf"}

_FONT = "Helvetica,Arial,sans-serif"
_VALUE_WIDTH = 24  # characters of a bound input's value shown in a port row


# --------------------------------------------------------------------------- naming helpers


def node_group(node: Node | NodeShape) -> str | None:
    """The cluster a node is drawn in: its `group` attribute, else its id before the last "/"."""
    group = node.group
    if group:
        return str(group).strip("/") or None
    head, sep, _ = node.id.rpartition("/")
    return head.strip("/") or None if sep else None


# --------------------------------------------------------------------------- group tree


@dataclass
class _Group:
    path: str
    nodes: list[str] = field(default_factory=list)
    children: dict[str, _Group] = field(default_factory=dict)


def _group_tree(wf: Drawable) -> _Group:
    root = _Group("")
    for node_id in wf.order:
        group = node_group(wf.nodes[node_id])
        here = root
        if group:
            path = ""
            for part in group.split("/"):
                if not part:
                    continue
                path = f"{path}/{part}" if path else part
                here = here.children.setdefault(path, _Group(path))
        here.nodes.append(node_id)
    return root


def _ids(wf: Drawable) -> dict[str, str]:
    """Safe identifiers for the drawing languages; the real ids only ever appear in labels."""
    return {node_id: f"n{i}" for i, node_id in enumerate(wf.order)}


# --------------------------------------------------------------------------- Mermaid


def _mermaid_text(text: str) -> str:
    """Escape text for a quoted Mermaid label (Mermaid's `#name;` / `#code;` entities)."""
    out: list[str] = []
    for ch in text:
        if ch == '"':
            out.append("#quot;")
        elif ch in "#&<>|[]{}();`\\":
            out.append(f"#{ord(ch)};")
        elif ch in "\r\n":
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


def _mermaid_ports(ports: Iterable[Port | PortShape]) -> str:
    return ", ".join(f"{p.name}: {type_name(p.type)}" for p in ports)


def workflow_to_mermaid(wf: Drawable) -> str:
    """Mermaid `flowchart LR` source for `wf` (paste into Markdown, GitHub, mermaid.live)."""
    ids = _ids(wf)
    lines = ["flowchart LR"]

    def emit_node(node_id: str, indent: str) -> None:
        node = wf.nodes[node_id]
        parts = [f"<b>{_mermaid_text(node_id)}</b>", _mermaid_text(node.node_type())]
        if node.inputs:
            parts.append("in: " + _mermaid_text(_mermaid_ports(node.inputs.values())))
        if node.outputs:
            parts.append("out: " + _mermaid_text(_mermaid_ports(node.outputs.values())))
        lines.append(f'{indent}{ids[node_id]}["{"<br/>".join(parts)}"]')

    def emit_group(group: _Group, indent: str, counter: list[int]) -> None:
        for child in group.children.values():
            counter[0] += 1
            label = _mermaid_text(child.path.rsplit("/", 1)[-1])
            lines.append(f'{indent}subgraph g{counter[0]}["{label}"]')
            emit_group(child, indent + "  ", counter)
            lines.append(f"{indent}end")
        for node_id in group.nodes:
            emit_node(node_id, indent)

    emit_group(_group_tree(wf), "  ", [0])

    for i, (node_id, port) in enumerate(wf.open_inputs):
        lines.append(f'  p{i}(["{_mermaid_text(port)}"]) -.-> {ids[node_id]}')
    for src, dst, pairs in _edges(wf):
        label = "<br/>".join(_mermaid_text(f"{a}→{b}") for a, b in pairs)
        lines.append(f'  {ids[src]} -->|"{label}"| {ids[dst]}')
    return "\n".join(lines) + "\n"


def _edges(wf: Drawable) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """`(source, target, [(source_port, target_port), ...])`, one entry per connected node pair."""
    grouped: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for c in wf.connections:
        grouped.setdefault((c.source, c.target), []).append((c.source_port, c.target_port))
    return [(s, t, pairs) for (s, t), pairs in grouped.items()]


# --------------------------------------------------------------------------- DOT


@dataclass(frozen=True, slots=True)
class NodeStyle:
    """How one node is painted (run pictures colour nodes by status)."""

    fill: str = "#ffffff"
    border: str = "#455a64"
    dashed: bool = False
    notes: tuple[str, ...] = ()  # extra lines under the type, e.g. duration and error


def _h(text: str) -> str:
    return html.escape(text, quote=False)


def _port_rows(node: Node | NodeShape, bound: Mapping[str, Any], side: str) -> str:
    ports: Mapping[str, Port | PortShape] = node.inputs if side == "in" else node.outputs
    align = "LEFT" if side == "in" else "RIGHT"
    rows: list[str] = []
    for i, port in enumerate(ports.values()):
        text = f"{port.name}: {type_name(port.type)}"
        if side == "in" and port.name in bound:
            text = f"{port.name} = {shorten(repr(bound[port.name]), _VALUE_WIDTH)}"
        elif side == "in" and not port.required:
            text += " ?"
        rows.append(
            f'<TR><TD PORT="{side}{i}" ALIGN="{align}" BALIGN="{align}">'
            f'<FONT POINT-SIZE="10">{_h(text)}</FONT></TD></TR>'
        )
    if not rows:
        rows.append('<TR><TD BORDER="0"> </TD></TR>')
    return "".join(rows)


def _node_label(node: Node | NodeShape, bound: Mapping[str, Any], style: NodeStyle) -> str:
    notes = "".join(
        f'<TR><TD COLSPAN="2"><FONT POINT-SIZE="9" COLOR="#37474f">{_h(n)}</FONT></TD></TR>'
        for n in style.notes
    )
    ins = (
        f'<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0">{_port_rows(node, bound, "in")}</TABLE>'
    )
    outs = (
        f'<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0">{_port_rows(node, bound, "out")}</TABLE>'
    )
    return (
        f'<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="3" BGCOLOR="{style.fill}">'
        f'<TR><TD COLSPAN="2"><B>{_h(node.id)}</B></TD></TR>'
        f'<TR><TD COLSPAN="2"><FONT POINT-SIZE="9" COLOR="#546e7a">{_h(node.node_type())}'
        f"</FONT></TD></TR>{notes}"
        f'<TR><TD VALIGN="TOP">{ins}</TD><TD VALIGN="TOP">{outs}</TD></TR></TABLE>>'
    )


def build_dot(
    wf: Drawable,
    style_of: Callable[[str], NodeStyle] | None = None,
    *,
    title: str | None = None,
    link_of: Callable[[str], str] | None = None,
) -> Any:
    """The workflow (or its stored shape) as a `graphviz.Digraph`; `style_of(node_id)` paints
    nodes (default: plain), `title` labels the drawing (default: the workflow's name).
    `link_of(node_id)`: makes each node a link to that URL, its SVG group's id
    ``node-<node_id>`` (the run browser colours and opens nodes by it)."""
    import graphviz

    ids = _ids(wf)
    dot = graphviz.Digraph(name=wf.name or "workflow")
    dot.attr(rankdir="LR", fontname=_FONT, label=title or wf.name, labelloc="t", nodesep="0.3")
    dot.attr("node", shape="box", style="rounded,filled", fontname=_FONT, margin="0.05")
    dot.attr("edge", fontname=_FONT, fontsize="9", color="#607d8b")

    def add_node(graph: Any, node_id: str) -> None:
        node = wf.nodes[node_id]
        style = style_of(node_id) if style_of else NodeStyle()
        linked = (
            {"id": f"node-{node_id}", "URL": link_of(node_id), "target": "_top"} if link_of else {}
        )
        graph.node(
            ids[node_id],
            **linked,
            label=_node_label(node, wf.bound_inputs.get(node_id, {}), style),
            fillcolor=style.fill,
            color=style.border,
            penwidth="1.5",
            style="rounded,filled,dashed" if style.dashed else "rounded,filled",
            tooltip=f"{node_id} ({node.node_type()})",
        )

    def add_group(graph: Any, group: _Group, counter: list[int]) -> None:
        for child in group.children.values():
            counter[0] += 1
            with graph.subgraph(name=f"cluster_{counter[0]}") as sub:
                sub.attr(
                    label=child.path.rsplit("/", 1)[-1],
                    style="rounded,dashed",
                    color="#90a4ae",
                    fontname=_FONT,
                )
                add_group(sub, child, counter)
        for node_id in group.nodes:
            add_node(graph, node_id)

    add_group(dot, _group_tree(wf), [0])

    in_index = {nid: {p: i for i, p in enumerate(n.inputs)} for nid, n in wf.nodes.items()}
    out_index = {nid: {p: i for i, p in enumerate(n.outputs)} for nid, n in wf.nodes.items()}
    for i, (node_id, port) in enumerate(wf.open_inputs):
        param = f"p{i}"
        dot.node(
            param,
            label=port,
            shape="cds",
            style="filled",
            fillcolor="#fff8e1",
            color="#ffa000",
            fontsize="10",
            tooltip=f"parameter {node_id}.{port}",
        )
        target = ids[node_id]
        if port in in_index[node_id]:
            target = f"{target}:in{in_index[node_id][port]}:w"
        dot.edge(param, target, style="dashed", color="#ffa000", arrowsize="0.6")
    for c in wf.connections:
        src, dst = ids[c.source], ids[c.target]
        if c.source_port in out_index[c.source]:
            src = f"{src}:out{out_index[c.source][c.source_port]}:e"
        if c.target_port in in_index[c.target]:
            dst = f"{dst}:in{in_index[c.target][c.target_port]}:w"
        dot.edge(src, dst, label=f"{c.source_port}→{c.target_port}")
    return dot


def workflow_to_dot(wf: Drawable) -> str:
    """Graphviz DOT source for `wf`."""
    return str(build_dot(wf).source)


# --------------------------------------------------------------------------- running dot


def dot_pipe(source: str, fmt: str) -> bytes:
    """Lay out DOT `source` with Graphviz's `dot` and return the `fmt` bytes."""
    import graphviz

    try:
        return bytes(graphviz.Source(source).pipe(format=fmt))
    except graphviz.ExecutableNotFound as exc:
        raise RenderError(
            "Graphviz's `dot` program was not found on PATH; drawing needs it. Install it with "
            "`apt-get install graphviz` (or `make setup`, which does so), or use "
            "`workflow.to_mermaid()` / `to_dot()` for text output."
        ) from exc
    except subprocess.CalledProcessError as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        raise RenderError(f"Graphviz's `dot` failed: {shorten(stderr, 300)}") from exc


def output_format(path: str | Path) -> str:
    """The format a path's suffix asks for; `RenderError` for a suffix Kaizen cannot draw."""
    suffix = Path(path).suffix.lower()
    fmt = FORMATS.get(suffix)
    if fmt is None:
        choices = ", ".join(FORMATS)
        shown = f"{suffix!r}" if suffix else "no suffix"
        raise RenderError(f"cannot draw to {str(path)!r}: {shown}; use one of {choices}")
    return fmt


def write_dot(source: str, path: str | Path) -> Path:
    """Draw DOT `source` to `path` (format from the suffix), creating parent folders."""
    target = Path(path)
    data = dot_pipe(source, output_format(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def svg_text(source: str) -> str:
    """DOT `source` laid out as an SVG document string."""
    return dot_pipe(source, "svg").decode("utf-8")


def render_workflow(wf: Workflow, path: str | Path) -> Path:
    """Draw `wf` to `path`; the suffix picks the format (`.svg`, `.png`, `.pdf`)."""
    return write_dot(workflow_to_dot(wf), path)


def workflow_svg(wf: Workflow) -> str:
    """`wf` as an SVG string (what Jupyter shows for a `Workflow`)."""
    return svg_text(workflow_to_dot(wf))


__all__ = [
    "FORMATS",
    "NodeStyle",
    "build_dot",
    "render_workflow",
    "workflow_svg",
    "workflow_to_dot",
    "workflow_to_mermaid",
]
