"""Pictures: workflows as Mermaid, DOT and SVG/PNG/PDF (`graph`), runs as a status-coloured
graph above a timeline (`run`, `timeline`). Only `graph` needs Graphviz's `dot`."""

from kaizen.render.graph import (
    FORMATS,
    NodeStyle,
    build_dot,
    render_workflow,
    workflow_svg,
    workflow_to_dot,
    workflow_to_mermaid,
)
from kaizen.render.run import render_run, run_svg, run_to_dot
from kaizen.render.timeline import STATUS_COLORS, format_duration, timeline_svg

__all__ = [
    "FORMATS",
    "STATUS_COLORS",
    "NodeStyle",
    "build_dot",
    "format_duration",
    "render_run",
    "render_workflow",
    "run_svg",
    "run_to_dot",
    "timeline_svg",
    "workflow_svg",
    "workflow_to_dot",
    "workflow_to_mermaid",
]
