"""A run's timeline as hand-written SVG: one Gantt bar per node on a shared time axis.

Bars are coloured by `NodeStatus` (the same colours as the run graph), labelled with the node id and
duration, and marked with the attempt count when a node was retried. Nodes that never started
(skipped, cancelled, pending) get a dashed marker at the moment they were settled. Every bar has a
`<title>` tooltip with the full error or skip reason. Needs no Graphviz.

An agent's tool calls are drawn inside its bar, as strips along the bar's foot at the moments
each call ran (teal; red when it failed; calls at the same time in lanes), each with its own
tooltip (arguments, output or error, duration).

A node's model calls (`ModelCallSpan`) are drawn as a strip along the bottom of its bar: the time
a call waited for the model (queued: the embedded model's free sequence) hatched and pale, the
time it was generating solid, so a slow node shows whether it was waiting or working.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape, quoteattr

from kaizen.text import shorten

if TYPE_CHECKING:
    from kaizen.runtime.record import ModelCallSpan, NodeRun, RunRecord, ToolCallRecord

__all__ = [
    "GENERATING_COLOR",
    "QUEUED_COLOR",
    "STATUS_COLORS",
    "StatusColor",
    "format_duration",
    "timeline_svg",
]


@dataclass(frozen=True, slots=True)
class StatusColor:
    fill: str
    stroke: str
    dashed: bool = False


#: How each node status is painted, in run graphs and timelines alike (keyed by the status's
#: value, which a `NodeStatus` equals).
STATUS_COLORS: dict[str, StatusColor] = {
    "completed": StatusColor("#a5d6a7", "#2e7d32"),
    "failed": StatusColor("#ef9a9a", "#c62828"),
    "skipped": StatusColor("#e0e0e0", "#757575", dashed=True),
    "cancelled": StatusColor("#ffcc80", "#e65100"),
    "pending": StatusColor("#ffffff", "#9e9e9e"),
    "running": StatusColor("#90caf9", "#1565c0"),
}

_FONT = "Helvetica,Arial,sans-serif"
_CHART_WIDTH = 640
_NOTE_WIDTH = 220  # room right of the chart for the last bars' notes
_ROW = 24
_BAR = 16
_TOP = 58  # below the title and the tick labels
_CHAR = 7.0  # generous glyph width at 11px, for sizing the label column
_NOTE_CHAR = 6.0  # the same at 10px, for fitting notes
_STRIP = 6  # height of the model-call strip at the bottom of a bar

#: How model-call time is painted: waiting for the model, and generating.
QUEUED_COLOR = StatusColor("url(#kaizen-queued)", "#ef6c00", dashed=True)
GENERATING_COLOR = StatusColor("#3949ab", "#1a237e")
_PATTERN = (
    '<defs><pattern id="kaizen-queued" width="4" height="4" patternUnits="userSpaceOnUse" '
    'patternTransform="rotate(45)"><rect width="4" height="4" fill="#fff3e0"/>'
    '<line x1="0" y1="0" x2="0" y2="4" stroke="#ef6c00" stroke-width="1.5"/></pattern></defs>'
)


def format_duration(seconds: float) -> str:
    """`850 µs`, `12.3 ms`, `2.41 s`."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def _tick_step(span: float, target: int = 6) -> float:
    raw = span / target
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= raw:
            return factor * magnitude
    return 10 * magnitude  # pragma: no cover - the loop always returns


def _tick_label(value: float, span: float) -> str:
    if span >= 1:
        return f"{round(value, 6):g} s"
    return f"{round(value * 1e3, 6):g} ms"


def _note(run: NodeRun) -> str:
    parts: list[str] = []
    if run.duration is not None:
        parts.append(format_duration(run.duration))
    if run.attempts > 1:
        parts.append(f"×{run.attempts} attempts")
    if run.tool_calls:
        count = len(run.tool_calls)
        parts.append(f"{count} tool call{'s' if count > 1 else ''}")
    queued = sum(call.queue_time for call in run.model_calls)
    if queued >= 0.0005:
        parts.append(f"queued {format_duration(queued)}")
    if run.status == "failed" and run.error:
        parts.append(shorten(run.error, 48))
    elif run.status == "skipped":
        parts.append("skipped" + (f": {shorten(run.skip_reason, 40)}" if run.skip_reason else ""))
    elif run.status in ("cancelled", "pending", "running"):
        parts.append(str(run.status))
    return " · ".join(parts)


def _tooltip(run: NodeRun) -> str:
    lines = [f"{run.node_id} ({run.node_type}): {run.status}"]
    if run.duration is not None:
        lines.append(f"duration {format_duration(run.duration)}")
    if run.attempts:
        lines.append(f"attempts {run.attempts}")
    if run.error:
        lines.append(f"error: {run.error}")
    if run.skip_reason:
        lines.append(f"skipped: {run.skip_reason}")
    for call in run.model_calls:
        lines.append(f"model call {call.model}: {_call_summary(call)}")
    return "\n".join(lines)


_TOOL_STRIP = 5  # height of the strip of tool calls along the foot of an agent's bar
_TOOL_OK, _TOOL_FAILED = "#00796b", "#c62828"


def _lanes(calls: list[ToolCallRecord]) -> tuple[list[int], int]:
    """A lane per call so that calls that overlap in time never share one (greedy, by start)."""
    ends: list[float] = []
    lanes = [0] * len(calls)
    for index in sorted(range(len(calls)), key=lambda i: calls[i].started):
        call = calls[index]
        free = next((lane for lane, end in enumerate(ends) if end <= call.started), None)
        if free is None:
            free = len(ends)
            ends.append(0.0)
        ends[free] = call.started + call.duration
        lanes[index] = free
    return lanes, max(len(ends), 1)


def _tool_strips(
    calls: list[ToolCallRecord], x_at: Callable[[float], float], bottom: float
) -> list[str]:
    """One small bar per tool call, at the moments it ran, with a tooltip; calls that ran at
    the same time are stacked in lanes up from the bar's foot."""
    shapes = []
    lanes, count = _lanes(calls)
    height = min(_TOOL_STRIP, (_BAR - 2) / count)
    for call, lane in zip(calls, lanes, strict=True):
        x = x_at(call.started)
        y = bottom + _TOOL_STRIP - height * (lane + 1)
        width = max(x_at(call.started + call.duration) - x, 1.5)
        color = _TOOL_OK if call.error is None else _TOOL_FAILED
        outcome = f"error: {call.error}" if call.error is not None else f"→ {call.output}"
        tip = (
            f"tool {call.name}({shorten(str(call.arguments), 200)}) "
            f"{format_duration(call.duration)}\n{shorten(outcome, 300)}"
        )
        shapes.append(
            f'<rect class="tool-call" data-tool={quoteattr(call.name)} x="{x:.1f}" y="{y:.1f}" '
            f'width="{width:.1f}" height="{height:.1f}" fill="{color}" opacity="0.85">'
            f"<title>{escape(tip)}</title></rect>"
        )
    return shapes


def _call_summary(call: ModelCallSpan) -> str:
    text = (
        f"queued {format_duration(call.queue_time)}, "
        f"generating {format_duration(call.generation_time)}"
    )
    return text + (" (failed)" if call.failed else "")


def _model_call_strip(call: ModelCallSpan, y: float, x_at: Callable[[float], float]) -> str:
    """The strip of one model call: a hatched queued part, then a solid generating part."""
    top = y + 2 + _BAR - _STRIP
    parts = [f'<g class="model-call" data-queued="{call.queue_time:.6f}">']
    parts.append(f"<title>{escape(f'model call {call.model}: {_call_summary(call)}')}</title>")
    spans = (
        ("queued", QUEUED_COLOR, call.started, call.generation_started),
        ("generating", GENERATING_COLOR, call.generation_started, call.finished),
    )
    for kind, color, start, end in spans:
        if end - start <= 0:
            continue
        width = max(x_at(end) - x_at(start), 1.0)
        parts.append(
            f'<rect class="{kind}" x="{x_at(start):.1f}" y="{top:.1f}" width="{width:.1f}" '
            f'height="{_STRIP}" fill="{color.fill}" stroke="{color.stroke}" stroke-width="0.6"/>'
        )
    parts.append("</g>")
    return "".join(parts)


def timeline_svg(record: RunRecord) -> str:
    """The run as a standalone SVG document: one bar per node, on a time axis in ms or s."""
    runs = list(record.nodes.values())
    index = {run.node_id: i for i, run in enumerate(runs)}
    runs.sort(key=lambda r: (r.started is None, r.started or 0.0, index[r.node_id]))

    moments = [t for r in runs for t in (r.started, r.finished) if t is not None]
    moments += [t for r in runs for call in r.model_calls for t in (call.started, call.finished)]
    t0 = min([record.started, *moments])
    t_end = max([record.finished or t0, *moments])
    span = max(t_end - t0, 1e-3)
    step = _tick_step(span)
    ticks = math.floor(span / step + 1e-9)
    axis_end = max(span, ticks * step)

    label_width = min(max((len(r.node_id) for r in runs), default=4) * _CHAR + 16, 300)
    x0 = 10 + label_width
    scale = _CHART_WIDTH / axis_end
    width = x0 + _CHART_WIDTH + _NOTE_WIDTH
    legend_y = _TOP + len(runs) * _ROW + 16
    height = legend_y + 24

    def x_at(t: float) -> float:
        return x0 + (t - t0) * scale

    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="{_FONT}" font-size="11">',
        f'<rect x="0" y="0" width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>',
    ]
    if any(r.model_calls for r in runs):
        out.append(_PATTERN)
    total = record.finished - record.started if record.finished is not None else None
    title = f"run {record.workflow_name or record.run_id}: {record.status}"
    if total is not None:
        title += f" in {format_duration(total)}"
    out.append(f'<text x="10" y="18" font-size="13" font-weight="bold">{escape(title)}</text>')

    # time axis: grid lines through every row, labels above
    rows_bottom = _TOP + len(runs) * _ROW
    for i in range(ticks + 1):
        x = x_at(t0 + i * step)
        out.append(
            f'<line x1="{x:.1f}" y1="{_TOP - 8}" x2="{x:.1f}" y2="{rows_bottom}" '
            'stroke="#eceff1" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{x:.1f}" y="{_TOP - 12}" text-anchor="middle" fill="#546e7a" '
            f'font-size="10">{escape(_tick_label(i * step, span))}</text>'
        )
    out.append(
        f'<line x1="{x0}" y1="{_TOP - 8}" x2="{x0 + _CHART_WIDTH}" y2="{_TOP - 8}" '
        'stroke="#90a4ae" stroke-width="1"/>'
    )

    for row, run in enumerate(runs):
        y = _TOP + row * _ROW
        color = STATUS_COLORS.get(run.status, STATUS_COLORS["pending"])
        dash = ' stroke-dasharray="4 2"' if color.dashed or run.started is None else ""
        if run.started is not None:
            end = run.finished if run.finished is not None else t_end
            bar_x, bar_w = x_at(run.started), max((end - run.started) * scale, 2.0)
        else:  # never started: a small marker where it was settled
            bar_x, bar_w = x_at(run.finished if run.finished is not None else t0), 6.0
        out.append(
            f'<g class="node-run" data-node={quoteattr(run.node_id)} data-status="{run.status}">'
        )
        out.append(f"<title>{escape(_tooltip(run))}</title>")
        out.append(
            f'<text x="{x0 - 8}" y="{y + _BAR - 4}" text-anchor="end">'
            f"{escape(shorten(run.node_id, int((label_width - 16) / _CHAR)))}</text>"
        )
        out.append(
            f'<rect x="{bar_x:.1f}" y="{y + 2}" width="{bar_w:.1f}" height="{_BAR}" rx="3" '
            f'fill="{color.fill}" stroke="{color.stroke}" stroke-width="1.2"{dash}/>'
        )
        out.extend(_tool_strips(run.tool_calls, x_at, y + 2 + _BAR - _TOOL_STRIP))
        for call in run.model_calls:
            out.append(_model_call_strip(call, y, x_at))
        if run.attempts > 1:
            out.append(
                f'<text x="{bar_x + 3:.1f}" y="{y + _BAR - 2}" font-size="9" '
                f'font-weight="bold" fill="{color.stroke}">×{run.attempts}</text>'
            )
        note = _note(run)
        room_right = (width - 8 - (bar_x + bar_w + 5)) / _NOTE_CHAR
        room_left = (bar_x - 5 - x0) / _NOTE_CHAR
        if len(note) > room_right and room_left > room_right:  # late bar: note on its left
            note_at, anchor, room = bar_x - 5, "end", room_left
        else:
            note_at, anchor, room = bar_x + bar_w + 5, "start", room_right
        out.append(
            f'<text x="{note_at:.1f}" y="{y + _BAR - 4}" text-anchor="{anchor}" fill="#37474f" '
            f'font-size="10">{escape(shorten(note, max(int(room), 8)))}</text>'
        )
        out.append("</g>")

    present = [s for s in STATUS_COLORS if any(r.status == s for r in runs)]
    x = 10.0
    for status in present:
        color = STATUS_COLORS[status]
        dash = ' stroke-dasharray="4 2"' if color.dashed else ""
        out.append(
            f'<rect x="{x:.0f}" y="{legend_y}" width="14" height="10" rx="2" fill="{color.fill}" '
            f'stroke="{color.stroke}"{dash}/>'
        )
        out.append(f'<text x="{x + 18:.0f}" y="{legend_y + 9}" font-size="10">{status}</text>')
        x += 28 + len(str(status)) * _CHAR
    if any(r.model_calls for r in runs):
        kinds = (("model: queued", QUEUED_COLOR), ("model: generating", GENERATING_COLOR))
        for label, color in kinds:
            out.append(
                f'<rect x="{x:.0f}" y="{legend_y + 2}" width="14" height="{_STRIP}" '
                f'fill="{color.fill}" stroke="{color.stroke}" stroke-width="0.6"/>'
            )
            out.append(f'<text x="{x + 18:.0f}" y="{legend_y + 9}" font-size="10">{label}</text>')
            x += 28 + len(label) * _CHAR
    out.append("</svg>")
    return "\n".join(out) + "\n"
