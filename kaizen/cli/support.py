"""What the `kaizen` commands share: finding a workflow from `module:attr` (loading targets and
JSON output are `kaizen.targets`, re-exported here), reading `--param` and `--<field>` options,
and writing a run's files.

Kept apart from `kaizen.cli` so the command definitions stay short and these pieces are testable
on their own. Imports only the standard library at module level.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kaizen.targets import CliError, load_object, to_json

if TYPE_CHECKING:
    from kaizen.runtime.record import RunRecord
    from kaizen.workflow.workflow import Workflow

__all__ = [
    "CliError",
    "load_object",
    "load_workflow",
    "parse_field_options",
    "parse_params",
    "parse_value",
    "safe_filename",
    "to_json",
    "write_run_files",
]


# --------------------------------------------------------------------------- targets
# (loading a target is kaizen.targets: `kaizen serve` and `kaizen mcp serve` share it)


def load_workflow(target: str) -> Workflow:
    """The `Workflow` a target names: a workflow, a builder (built here), or a function returning
    either (called with no arguments). Build problems raise `WorkflowValidationError`."""
    from kaizen.workflow.workflow import Workflow

    obj = load_object(target)
    for attempt in range(2):
        if isinstance(obj, Workflow):
            return obj
        if _is_builder(obj):
            built = obj.build()
            if not isinstance(built, Workflow):
                raise CliError(f"{target}.build() returned {type(built).__name__}, not a Workflow")
            return built
        if attempt == 0 and callable(obj) and not isinstance(obj, type):
            obj = obj()
            continue
        break
    raise CliError(
        f"{target} is a {type(obj).__name__}; expected a WorkflowBuilder, a Workflow, "
        "or a function returning one"
    )


def _is_builder(obj: Any) -> bool:
    return not isinstance(obj, type) and callable(getattr(obj, "build", None))


# --------------------------------------------------------------------------- options


def parse_value(text: str) -> Any:
    """A command-line value: JSON when it parses (`3`, `true`, `[1, 2]`, `"3"`), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """`["node.port=value", "port=value"]` -> `{"node": {"port": value}, "port": value}`.

    The node id is everything before the last "." (ids may contain dots; port names do not).
    """
    params: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CliError(f"--param {item!r}: write node.port=value or port=value")
        value = parse_value(text)
        node_id, dot, port = key.rpartition(".")
        if dot:
            if not node_id or not port:
                raise CliError(f"--param {item!r}: write node.port=value or port=value")
            slot = params.setdefault(node_id, {})
            if not isinstance(slot, dict) or port in slot:
                raise CliError(f"--param {key!r} is given twice (or also as a bare port)")
            slot[port] = value
        else:
            if key in params:
                raise CliError(f"--param {key!r} is given twice (or also as a node id)")
            params[key] = value
    return params


def parse_field_options(args: Sequence[str]) -> tuple[str, dict[str, str]]:
    """`kaizen ask` arguments: one SPEC and `--field value` / `--field=value` pairs, any order.

    Dashes in field names become underscores (`--max-items` is field `max_items`).
    """
    spec: str | None = None
    fields: dict[str, str] = {}
    i = 0
    while i < len(args):
        token = args[i]
        if token.startswith("--") and len(token) > 2:
            name, sep, value = token[2:].partition("=")
            if not sep:
                if i + 1 >= len(args):
                    raise CliError(f"{token} needs a value: {token} VALUE")
                i += 1
                value = args[i]
            field = name.replace("-", "_")
            if not field.isidentifier():
                raise CliError(f"{token}: {field!r} is not a field name")
            if field in fields:
                raise CliError(f"{token} is given twice")
            fields[field] = value
        elif spec is None:
            spec = token
        else:
            raise CliError(
                f"unexpected argument {token!r}: give one signature, then --field VALUE per input"
            )
        i += 1
    if spec is None:
        raise CliError(
            'missing the signature, e.g. kaizen ask "question -> answer" --question "..."'
        )
    return spec, fields


def safe_filename(name: str) -> str:
    """A workflow name made safe as a file name stem."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return stem or "workflow"


# --------------------------------------------------------------------------- run files


def write_run_files(
    workflow: Workflow,
    record: RunRecord,
    results: Any,
    out: Path,
    note: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Write `<name>-results.json` (results and record), `<name>.svg` (the graph) and
    `<name>-run.svg` (the run: status colours above the timeline) to `out`. The pictures are
    best effort: a missing `dot` is reported through `note`, the results file is still written."""
    from kaizen.errors import RenderError
    from kaizen.render import render_run, render_workflow

    name = safe_filename(workflow.name)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "workflow": workflow.name,
        "run_id": record.run_id,
        "status": str(record.status),
        "results": results,
        "record": record.to_dict(),
    }
    written = {"results": out / f"{name}-results.json"}
    written["results"].write_text(to_json(payload) + "\n", encoding="utf-8")
    try:
        written["graph"] = render_workflow(workflow, out / f"{name}.svg")
        written["run"] = render_run(record, out / f"{name}-run.svg", workflow)
    except RenderError as exc:
        if note is not None:
            note(f"pictures not drawn: {exc}")
    return written
