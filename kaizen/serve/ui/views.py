"""What the run browser's pages show, worked out from the store's rows (no HTML here).

`run_view(details, node=...)` turns `kaizen.store.browse.RunDetails` into a `RunView`: the
totals, each node's line (status, duration, tokens, cost), the open node's `NodePanel` (typed
inputs and outputs, model calls with the recorded messages and replies, tool calls, retries,
notes, memory), the interrupts still open, and the drawn graph and timeline. `compare_views`
lines two runs up node by node. Every text that reaches a page goes through `redact` (key-shaped
tokens never reach a page) and is folded past `FOLD` characters; escaping is the templates'
(Jinja2 autoescape), never skipped.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Any

from kaizen.llm.retry import redact
from kaizen.render.timeline import format_duration
from kaizen.runtime.record import RunRecord
from kaizen.store.browse import RunDetails, StoredCall
from kaizen.store.encode import TAG

__all__ = [
    "FOLD",
    "STATUS_ICONS",
    "Compared",
    "NodeLine",
    "NodePanel",
    "RunView",
    "Shown",
    "compare_views",
    "duration_text",
    "interrupt_shown",
    "run_view",
    "shown",
    "time_text",
]

FOLD = 2000  # characters of a value shown before the rest is folded away
# status as a symbol as well as a colour (never hue alone)
STATUS_ICONS = {
    "completed": "✓",
    "failed": "✗",
    "running": "▶",
    "queued": "…",
    "waiting": "‖",
    "waiting_approval": "‖",
    "cancelled": "⊘",
    "skipped": "↷",
    "pending": "○",
}


@dataclass(frozen=True, slots=True)
class Shown:
    """A value as a page shows it: its type, its text (folded past `FOLD`), its full size."""

    type: str
    text: str
    size: int
    folded: bool = False


def shown(value: Any, limit: int = FOLD) -> Shown:
    """A stored value (the store's tagged JSON) pretty-printed with its type."""
    kind, plain = _typed(value)
    text = plain if isinstance(plain, str) else json.dumps(plain, indent=2, ensure_ascii=False)
    text = redact(text)
    if len(text) > limit:
        return Shown(kind, text[:limit], len(text), True)
    return Shown(kind, text, len(text))


def _typed(value: Any) -> tuple[str, Any]:
    """(type name, the value without the store's tags)."""
    if isinstance(value, dict) and TAG in value:
        tag = value[TAG]
        if tag in ("pydantic", "dataclass"):
            name = str(value.get("type", "")).rpartition(":")[2] or tag
            return name, _untagged(value.get("data"))
        return str(tag), _untagged(value.get("data", value.get("value")))
    if isinstance(value, bool):
        return "bool", json.dumps(value)
    if isinstance(value, int | float):
        return type(value).__name__, json.dumps(value)
    if value is None:
        return "None", "null"
    if isinstance(value, str):
        return "str", value
    return type(value).__name__, _untagged(value)


def _untagged(value: Any) -> Any:
    if isinstance(value, dict):
        if TAG in value:
            return _typed(value)[1]
        return {k: _untagged(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_untagged(v) for v in value]
    return value


def time_text(moment: float | None) -> str:
    if moment is None:
        return "—"
    stamp = datetime.datetime.fromtimestamp(moment, tz=datetime.UTC)
    return stamp.strftime("%Y-%m-%d %H:%M:%S UTC")


def duration_text(seconds: float | None) -> str:
    return "—" if seconds is None else format_duration(seconds)


def cost_text(cost: float | None) -> str:
    if cost is None:
        return "—"
    return "$0" if cost == 0 else f"${cost:.6f}".rstrip("0").rstrip(".")


# -- one run ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class NodeLine:
    """A node's line in the run's node table (and its status on the graph)."""

    node_id: str
    node_type: str
    status: str
    duration: float | None = None
    attempts: int = 0
    tokens: int = 0
    cost: float = 0.0
    error: str | None = None

    @property
    def icon(self) -> str:
        return STATUS_ICONS.get(self.status, "·")


@dataclass(slots=True)
class ModelCallView:
    model: str
    started: float
    latency: float
    queue_time: float
    failed: bool
    messages: list[tuple[str, Shown]] = field(default_factory=list)  # (role, content)
    reply: Shown | None = None
    answered_by: str | None = None  # which model answered
    fallbacks: list[str] = field(default_factory=list)  # models tried before it, and why
    tokens: int | None = None  # this call's (from its recording)
    cost: float | None = None


@dataclass(slots=True)
class ToolCallView:
    name: str
    arguments: Shown
    result: Shown | None
    error: str | None
    duration: float


@dataclass(slots=True)
class Port:
    name: str
    type: str
    value: Shown | None  # None: not known (the source never completed)
    source: str = ""  # where it came from: "parameter", "bound", "<node>.<port>"


@dataclass(slots=True)
class NodePanel:
    """Everything about one node of a run."""

    line: NodeLine
    inputs: list[Port] = field(default_factory=list)
    outputs: list[Port] = field(default_factory=list)
    outputs_note: str | None = None  # why outputs are not shown (pickled, not checkpointed)
    model_calls: list[ModelCallView] = field(default_factory=list)
    tool_calls: list[ToolCallView] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    skip_reason: str | None = None
    stop_reason: str | None = None
    worker: str | None = None
    restored: bool = False
    notes: list[Shown] = field(default_factory=list)
    memory: list[Shown] = field(default_factory=list)
    interrupts: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class RunView:
    run_id: str
    workflow: str
    status: str
    started: float
    finished: float | None
    tokens: int
    cost: float
    model_calls: int
    critical_path: list[str]
    critical_seconds: float | None
    nodes: list[NodeLine]
    open_interrupts: list[dict[str, Any]]
    error: str | None
    results: Shown | None
    parameters: list[Port]
    served: bool
    checkpointed: bool
    recorded: bool
    last_event: int
    panel: NodePanel | None = None

    @property
    def duration(self) -> float | None:
        return None if self.finished is None else max(0.0, self.finished - self.started)

    @property
    def icon(self) -> str:
        return STATUS_ICONS.get(self.status, "·")

    @property
    def is_live(self) -> bool:
        return self.status in ("running", "queued")

    @property
    def statuses(self) -> dict[str, str]:
        return {line.node_id: line.status for line in self.nodes}


def record_of(details: RunDetails) -> RunRecord | None:
    return None if details.record is None else RunRecord.from_dict(details.record)


def run_view(details: RunDetails, node: str | None = None) -> RunView:
    """The run page of `details`; `node`: the node whose panel is open."""
    record = record_of(details)
    lines = _lines(details, record)
    usage = record.usage if record is not None else None
    path, seconds = _critical_path(details, record)
    view = RunView(
        run_id=details.run_id,
        workflow=details.workflow,
        status=details.status,
        started=details.started,
        finished=details.finished,
        tokens=usage.total_tokens if usage else sum(n.tokens for n in lines),
        cost=usage.cost if usage else sum(n.cost for n in lines),
        model_calls=usage.calls if usage else 0,
        critical_path=path,
        critical_seconds=seconds,
        nodes=lines,
        open_interrupts=[interrupt_shown(i) for i in details.interrupts if not i["answered"]],
        error=redact(details.error) if details.error else None,
        results=None if details.results is None else shown(details.results),
        parameters=[
            Port(name, "", shown(value), "parameter") for name, value in details.parameters.items()
        ],
        served=details.served,
        checkpointed=details.checkpointed,
        recorded=details.recorded,
        last_event=details.last_event,
    )
    if node is not None:
        line = next((n for n in lines if n.node_id == node), None)
        if line is not None:
            view.panel = _panel(details, record, line)
    return view


def _lines(details: RunDetails, record: RunRecord | None) -> list[NodeLine]:
    order = list(details.shape.nodes) if details.shape else []
    if record is not None:
        order += [n for n in record.nodes if n not in order]
    order += [n for n in details.outputs if n not in order]
    lines = []
    for node_id in order:
        run = record.nodes.get(node_id) if record is not None else None
        shape = details.shape.nodes.get(node_id) if details.shape else None
        status = details.live_status.get(node_id) or (str(run.status) if run else None)
        if status is None or (status == "pending" and node_id in details.outputs):
            status = "completed" if node_id in details.outputs else "pending"
        line = NodeLine(
            node_id, shape.type_name if shape else (run.node_type if run else "?"), status
        )
        if run is not None:
            line.duration, line.attempts = run.duration, run.attempts
            line.tokens, line.cost = run.usage.total_tokens, run.usage.cost
            line.error = redact(run.error) if run.error else None
        lines.append(line)
    return lines


def _critical_path(details: RunDetails, record: RunRecord | None) -> tuple[list[str], float | None]:
    """The chain of nodes that decided the run's length: from the node that finished last,
    back through the upstream node that finished last before it started."""
    if record is None or details.shape is None:
        return [], None
    finished = {n: r.finished for n, r in record.nodes.items() if r.finished is not None}
    if not finished:
        return [], None
    node = max(finished, key=lambda n: finished[n])
    path = [node]
    while True:
        sources = {c.source for c in details.shape.upstream(node) if c.source in finished}
        if not sources:
            break
        node = max(sources, key=lambda n: finished[n])
        if node in path:
            break
        path.append(node)
    path.reverse()
    first = record.nodes[path[0]]
    start = first.started if first.started is not None else record.started
    return path, finished[path[-1]] - start


def _panel(details: RunDetails, record: RunRecord | None, line: NodeLine) -> NodePanel:
    node_id = line.node_id
    run = record.nodes.get(node_id) if record is not None else None
    panel = NodePanel(line)
    shape = details.shape.nodes.get(node_id) if details.shape else None
    # inputs: a run parameter, a value bound at build time, or an upstream node's output
    given = details.parameters.get(node_id)
    if shape is not None:
        feeds = {c.target_port: c for c in details.shape.upstream(node_id)} if details.shape else {}
        bound = details.shape.bound_inputs.get(node_id, {}) if details.shape else {}
        for port in shape.inputs.values():
            if isinstance(given, dict) and port.name in given:
                panel.inputs.append(
                    Port(port.name, port.type, shown(given[port.name]), "parameter")
                )
            elif port.name in bound:
                panel.inputs.append(
                    Port(
                        port.name,
                        port.type,
                        Shown("repr", bound[port.name], len(bound[port.name])),
                        "bound",
                    )
                )
            elif port.name in feeds:
                c = feeds[port.name]
                source = details.outputs.get(c.source)
                value = None
                if (
                    source is not None
                    and isinstance(source.value, dict)
                    and c.source_port in source.value
                ):
                    value = shown(source.value[c.source_port])
                panel.inputs.append(
                    Port(port.name, port.type, value, f"{c.source}.{c.source_port}")
                )
            else:
                panel.inputs.append(Port(port.name, port.type, None, "default"))
    stored = details.outputs.get(node_id)
    types = {p.name: p.type for p in shape.outputs.values()} if shape else {}
    if stored is None:
        panel.outputs_note = (
            "no outputs stored: the node did not complete"
            if details.checkpointed or details.served
            else "outputs are stored for checkpointed runs only (checkpoint=True)"
        )
    elif stored.encoding != "json":
        panel.outputs_note = f"outputs pickled ({stored.size:,} bytes): not shown"
    elif stored.value is None:
        panel.outputs_note = f"outputs too large to show here ({stored.size:,} bytes)"
    elif isinstance(stored.value, dict):
        panel.outputs = [
            Port(name, types.get(name, ""), shown(value), "")
            for name, value in stored.value.items()
        ]
    if run is not None:
        panel.prompt_tokens = run.usage.prompt_tokens
        panel.completion_tokens = run.usage.completion_tokens
        panel.skip_reason = run.skip_reason
        panel.stop_reason = run.stop_reason
        panel.worker = run.worker
        panel.restored = run.restored
        recorded = [c for c in details.calls.get(node_id, []) if c.kind == "model"]
        for i, span in enumerate(run.model_calls):
            call = ModelCallView(
                span.model,
                span.started,
                span.finished - span.started,
                span.queue_time,
                span.failed,
                answered_by=span.model,
                fallbacks=[f"{m} ({why})" for m, why in span.fallbacks],
            )
            if i < len(recorded):
                _add_recording(call, recorded[i])
            panel.model_calls.append(call)
        for extra in recorded[len(run.model_calls) :]:  # recorded, no span (an older record)
            call = ModelCallView("", 0.0, 0.0, 0.0, False)
            _add_recording(call, extra)
            panel.model_calls.append(call)
        for tool in run.tool_calls:
            panel.tool_calls.append(
                ToolCallView(
                    tool.name,
                    shown(tool.arguments),
                    None if tool.output is None else shown(tool.output),
                    redact(tool.error) if tool.error else None,
                    tool.duration,
                )
            )
        for note in run.notes:
            target = panel.memory if str(note.get("kind", "")).startswith("memory") else panel.notes
            target.append(shown(note))
    panel.interrupts = [interrupt_shown(i) for i in details.interrupts if i["node_id"] == node_id]
    return panel


def interrupt_shown(interrupt: dict[str, Any]) -> dict[str, Any]:
    """An interrupt with key-shaped tokens in what it asked, its arguments and its answer
    redacted (they are shown as JSON)."""
    cleaned = dict(interrupt)
    for key in ("payload", "args", "answer"):
        if cleaned.get(key) is not None:
            cleaned[key] = json.loads(redact(json.dumps(cleaned[key], default=str)))
    return cleaned


def _add_recording(call: ModelCallView, recording: StoredCall) -> None:
    request = recording.request if isinstance(recording.request, dict) else {}
    for message in request.get("messages") or ():
        if isinstance(message, dict):
            content = message.get("content")
            if content is None and message.get("tool_calls"):
                content = message["tool_calls"]
            call.messages.append((str(message.get("role", "?")), shown(content)))
    if not call.model:
        call.model = str(request.get("model", ""))
    reply = recording.response
    if isinstance(reply, dict) and "text" in reply:  # a recorded RawReply (kaizen.store.calls)
        text, calls = reply.get("text"), reply.get("tool_calls")
        counts = (reply.get("prompt_tokens"), reply.get("completion_tokens"))
        if all(isinstance(n, int) for n in counts):
            call.tokens = int(counts[0] or 0) + int(counts[1] or 0)
        if isinstance(reply.get("cost"), int | float):
            call.cost = float(reply["cost"])
        call.reply = shown(text if text or not calls else {"tool_calls": calls})
    else:
        call.reply = shown(reply)


# -- two runs --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Compared:
    """One node of two runs side by side; `differs` names what is not the same."""

    node_id: str
    left: NodePanel | None
    right: NodePanel | None
    differs: list[str]


def compare_views(left: RunDetails, right: RunDetails) -> list[Compared]:
    """Node by node (the left run's order, then the right's extra nodes): what differs in
    status, outputs, prompts, models, tokens, cost and duration."""
    lv, rv = run_view(left), run_view(right)
    lrec, rrec = record_of(left), record_of(right)
    order = [n.node_id for n in lv.nodes] + [
        n.node_id for n in rv.nodes if n.node_id not in {m.node_id for m in lv.nodes}
    ]
    lines_l = {n.node_id: n for n in lv.nodes}
    lines_r = {n.node_id: n for n in rv.nodes}
    rows = []
    for node_id in order:
        a = _panel(left, lrec, lines_l[node_id]) if node_id in lines_l else None
        b = _panel(right, rrec, lines_r[node_id]) if node_id in lines_r else None
        rows.append(Compared(node_id, a, b, _differences(a, b)))
    return rows


def _differences(a: NodePanel | None, b: NodePanel | None) -> list[str]:
    if a is None or b is None:
        return ["only in one run"]
    found = []
    if a.line.status != b.line.status:
        found.append("status")
    if [(p.name, p.value and p.value.text) for p in a.outputs] != [
        (p.name, p.value and p.value.text) for p in b.outputs
    ]:
        found.append("outputs")
    if [[m[1].text for m in c.messages] for c in a.model_calls] != [
        [m[1].text for m in c.messages] for c in b.model_calls
    ]:
        found.append("prompts")
    if [c.model for c in a.model_calls] != [c.model for c in b.model_calls]:
        found.append("models")
    if (a.line.tokens, round(a.line.cost, 9)) != (b.line.tokens, round(b.line.cost, 9)):
        found.append("cost")
    da, db = a.line.duration, b.line.duration
    if da is not None and db is not None and abs(da - db) > max(0.2 * max(da, db), 0.05):
        found.append("duration")
    return found
