"""Drawing what a run did: the workflow graph coloured by node status, stacked above the timeline.

`run_to_dot` paints each node by its status (completed green, failed red, skipped grey and
dashed, cancelled orange, pending white) and adds its duration, attempts and shortened error or
skip reason. `run_svg` / `render_run` compose that graph and the timeline
(`kaizen.render.timeline.timeline_svg`) into
one SVG document by nesting both as `<svg>` children.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING
from xml.sax.saxutils import quoteattr

from kaizen.errors import RenderError
from kaizen.render.timeline import STATUS_COLORS, format_duration, timeline_svg
from kaizen.text import shorten

if TYPE_CHECKING:
    from kaizen.render.graph import NodeStyle
    from kaizen.runtime.record import NodeRun, RunRecord
    from kaizen.workflow.workflow import Workflow

__all__ = ["render_run", "run_svg", "run_to_dot"]

_NOTE_WIDTH = 60  # characters of an error or skip reason shown inside a node
_GAP = 12  # pixels between the graph and the timeline
_START_TAG = re.compile(r"<svg\b[^>]*>")
_PLACEMENT = frozenset({"x", "y", "width", "height", "viewBox", "version"})
_LENGTH = re.compile(r"^\s*([0-9.]+)\s*(pt|px)?\s*$")


def _style(run: NodeRun | None) -> NodeStyle:
    from kaizen.render.graph import NodeStyle

    status = run.status if run is not None else "pending"
    color = STATUS_COLORS.get(status, STATUS_COLORS["pending"])
    notes: list[str] = []
    if run is not None:
        facts = [str(status)]
        if run.duration is not None:
            facts.append(format_duration(run.duration))
        if run.attempts > 1:
            facts.append(f"{run.attempts} attempts")
        notes.append(" · ".join(facts))
        if run.error:
            notes.append(shorten(run.error, _NOTE_WIDTH))
        if run.skip_reason:
            notes.append("skipped: " + shorten(run.skip_reason, _NOTE_WIDTH - 9))
    else:
        notes.append(str(status))
    return NodeStyle(fill=color.fill, border=color.stroke, dashed=color.dashed, notes=tuple(notes))


def run_to_dot(wf: Workflow, record: RunRecord) -> str:
    """DOT source of `wf` with every node painted by its status in `record`."""
    from kaizen.render.graph import build_dot

    title = f"{wf.name}: {record.status}"
    if record.finished is not None:
        title += f" in {format_duration(record.finished - record.started)}"
    return str(build_dot(wf, lambda node_id: _style(record.nodes.get(node_id)), title=title).source)


def _pixels(value: str | None, what: str) -> float:
    match = _LENGTH.match(value or "")
    if match is None:
        raise RenderError(f"cannot compose run picture: SVG {what} {value!r} is not a length")
    number = float(match.group(1))
    return number * 4 / 3 if match.group(2) == "pt" else number


def _nest(document: str, y: float) -> tuple[str, float, float]:
    """Turn a standalone SVG document into a nested `<svg>` placed at `y`; return its size too."""
    root = ET.fromstring(document.encode("utf-8"))
    width = _pixels(root.get("width"), "width")
    height = _pixels(root.get("height"), "height")
    view_box = root.get("viewBox") or f"0 0 {width:g} {height:g}"
    body = document[document.index("<svg") :]
    start = _START_TAG.match(body)
    if start is None:  # pragma: no cover - ET parsed it, so the tag is there
        raise RenderError("cannot compose run picture: no <svg> start tag")
    kept = "".join(
        f" {name}={quoteattr(value)}"
        for name, value in root.attrib.items()
        if name not in _PLACEMENT and not name.startswith("{")  # presentation attrs survive
    )
    tag = (
        f'<svg x="0" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" '
        f'viewBox="{view_box}"{kept}>'
    )
    return tag + body[start.end() :], width, height


def run_svg(record: RunRecord, workflow: Workflow | None = None) -> str:
    """One SVG document: the status-coloured graph (when `workflow` is given) above the timeline."""
    from kaizen.render.graph import svg_text

    parts: list[str] = []
    y = 0.0
    width = 0.0
    documents = [timeline_svg(record)]
    if workflow is not None:
        documents.insert(0, svg_text(run_to_dot(workflow, record)))
    for document in documents:
        nested, w, h = _nest(document, y)
        parts.append(nested)
        width = max(width, w)
        y += h + _GAP
    height = y - _GAP
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.1f} {height:.1f}">\n'
        f'<rect width="100%" height="100%" fill="#ffffff"/>\n' + "\n".join(parts) + "\n</svg>\n"
    )


def render_run(record: RunRecord, path: str | Path, workflow: Workflow | None = None) -> Path:
    """Write the run picture (graph above timeline, or the timeline alone) as SVG to `path`."""
    target = Path(path)
    if target.suffix.lower() != ".svg":
        raise RenderError(
            f"cannot draw a run to {str(path)!r}: run pictures are SVG, use a .svg path "
            "(for PNG or PDF of the coloured graph, draw `run_to_dot(workflow, record)` with dot)"
        )
    document = run_svg(record, workflow)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(document, encoding="utf-8")
    return target
