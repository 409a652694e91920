"""The `kaizen` command line: draw a workflow, run it with a progress display, ask an agent.

    kaizen render module:attr -o graph.svg
    kaizen run module:attr --param node.port=value --param port=value [--out DIR]
    kaizen ask "question -> answer, confidence: float" --question "..." [--model M]
    kaizen demo [--topic T] [--out DIR] [--model M]

`module:attr` names a `WorkflowBuilder`, a `Workflow`, or a function returning either; the module
is imported with the current directory on `sys.path`, or given as a file (`path/to/flow.py:attr`).
Only typer is imported up front; Kaizen's engine loads inside the command that needs it, so
`kaizen --help` stays fast.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from kaizen.cli_support import (
    CliError,
    RunProgress,
    load_workflow,
    parse_field_options,
    parse_params,
    safe_filename,
    to_json,
)

if TYPE_CHECKING:
    from kaizen.record import RunRecord
    from kaizen.workflow import Workflow

app = typer.Typer(
    name="kaizen",
    help="Kaizen: typed-signature agents compiled into concurrent, drawable workflow graphs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Exit codes: 1 = the run itself failed (a node failed); 2 = the request was wrong (bad target,
# invalid workflow, bad parameters or fields, model configuration or provider errors).
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_TEXT_FORMATS = {".mmd": "mermaid", ".mermaid": "mermaid", ".dot": "dot", ".gv": "dot"}


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[bold red]error:[/bold red] {escape(message)}"
    )
    raise typer.Exit(code)


def _note(message: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[dim]{escape(message)}[/dim]")


@app.command()
def render(
    target: Annotated[str, typer.Argument(help="module:attr or path/to/file.py:attr")],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="File to write; the suffix picks the format: .svg .png .pdf (drawn by Graphviz), "
            ".mmd (Mermaid) or .dot (DOT source).",
        ),
    ] = Path("graph.svg"),
) -> None:
    """Draw a workflow: nodes with their typed ports, edges with their port mappings."""
    from kaizen.errors import KaizenError

    try:
        workflow = load_workflow(target)
        written = _write_graph(workflow, output)
    except (CliError, KaizenError) as exc:
        _fail(str(exc))
    _note(f"wrote {written}")


def _write_graph(workflow: Workflow, output: Path) -> Path:
    from kaizen.render import render_workflow, workflow_to_dot, workflow_to_mermaid

    kind = _TEXT_FORMATS.get(output.suffix.lower())
    if kind is None:
        return render_workflow(workflow, output)
    text = workflow_to_mermaid(workflow) if kind == "mermaid" else workflow_to_dot(workflow)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    return output


@app.command()
def run(
    target: Annotated[str, typer.Argument(help="module:attr or path/to/file.py:attr")],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="node.port=value (one node's input) or port=value (every open input of that "
            "name). Values are read as JSON when they parse, else kept as text.",
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the pictures and the results file.")
    ] = Path("out"),
    max_concurrency: Annotated[
        int | None, typer.Option("--max-concurrency", min=1, help="Nodes running at once.")
    ] = None,
    keep_going: Annotated[
        bool,
        typer.Option(
            "--keep-going",
            help="On a node failure, skip its dependants but finish independent branches "
            "(default: stop the run at the first failure).",
        ),
    ] = False,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show live progress on stderr.")
    ] = True,
) -> None:
    """Run a workflow, print its results as JSON, and write its pictures and results to --out."""
    from kaizen.errors import KaizenError, NodeExecutionError

    try:
        workflow = load_workflow(target)
        parameters = parse_params(param or [])
    except (CliError, KaizenError) as exc:
        _fail(str(exc))

    from kaizen.runtime import LocalRuntime

    options: dict[str, Any] = {"failure_policy": "continue" if keep_going else "fail_fast"}
    if max_concurrency is not None:
        options["max_concurrency"] = max_concurrency
    runtime = LocalRuntime(**options)
    run_id = uuid.uuid4().hex
    with RunProgress(workflow, enabled=progress) as display:
        try:
            results, _ = runtime.execute(
                workflow, parameters, run_id=run_id, on_event=display.handle
            )
        except NodeExecutionError as exc:
            _write_run_files(workflow, runtime.get_record(run_id), None, out)
            _fail(_one_line(exc), EXIT_RUN_FAILED)
        except KeyboardInterrupt:
            _write_run_files(workflow, runtime.get_record(run_id), None, out)
            _fail("interrupted; the run record shows what finished", EXIT_INTERRUPTED)
        except KaizenError as exc:  # parameters that do not fit, budget, ...
            _fail(str(exc))
    record = runtime.get_record(run_id)
    _write_run_files(workflow, record, results, out)
    typer.echo(to_json(results))
    _note(_summary(record))
    if str(record.status) != "completed":
        raise typer.Exit(EXIT_RUN_FAILED)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _summary(record: RunRecord) -> str:
    from kaizen.timeline import format_duration

    counts: dict[str, int] = {}
    for node_run in record.nodes.values():
        counts[str(node_run.status)] = counts.get(str(node_run.status), 0) + 1
    spread = ", ".join(f"{n} {status}" for status, n in counts.items())
    took = (
        f" in {format_duration(record.finished - record.started)}"
        if record.finished is not None
        else ""
    )
    return f"run {record.run_id}: {record.status}{took} ({spread})"


def _write_run_files(workflow: Workflow, record: RunRecord, results: Any, out: Path) -> list[Path]:
    """Write `<name>.svg`, `<name>-run.svg` and `<name>-results.json`; pictures are best effort
    (a missing `dot` is reported, not fatal: the results are still good)."""
    from kaizen.errors import RenderError
    from kaizen.render import render_run, render_workflow

    name = safe_filename(workflow.name)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    payload = {
        "workflow": workflow.name,
        "run_id": record.run_id,
        "status": str(record.status),
        "results": results,
        "record": record.to_dict(),
    }
    results_path = out / f"{name}-results.json"
    results_path.write_text(to_json(payload) + "\n", encoding="utf-8")
    written.append(results_path)
    try:
        written.append(render_workflow(workflow, out / f"{name}.svg"))
        written.append(render_run(record, out / f"{name}-run.svg", workflow))
    except RenderError as exc:
        _note(f"pictures not drawn: {exc}")
    _note("wrote " + ", ".join(str(p) for p in written))
    return written


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    options_metavar="SPEC --FIELD VALUE... [--model MODEL]",
)
def ask(
    ctx: typer.Context,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Model name (litellm's), e.g. openai/gpt-4o-mini."),
    ] = None,
) -> None:
    """Ask an agent once and print its typed outputs as JSON.

    SPEC is a signature such as "question -> answer, confidence: float"; give each input field
    as --<field> VALUE (text for text fields, JSON for the others).

    Example: kaizen ask "question -> answer, confidence: float" --question "What is ML?"
    """
    from kaizen.errors import (
        ConfigError,
        InputValidationError,
        ModelError,
        OutputParseError,
        SignatureError,
    )

    try:
        spec, raw_fields = parse_field_options(list(ctx.args))
    except CliError as exc:
        _fail(str(exc))

    from kaizen.framework import create_agent
    from kaizen.signatures import create_signature

    try:
        signature = create_signature(spec)
        fields = _typed_fields(signature, raw_fields)
        agent = create_agent("ask", signature=signature, config={"model": model} if model else None)
        result = agent.execute(**fields)
    except OutputParseError as exc:
        raw = exc.raw if len(exc.raw) <= 500 else exc.raw[:499] + "…"
        _fail(f"{exc}\nthe model replied: {raw}")
    except (SignatureError, ConfigError, ModelError, InputValidationError) as exc:
        _fail(str(exc))
    typer.echo(to_json(result.data))


def _typed_fields(signature: Any, raw: dict[str, str]) -> dict[str, Any]:
    """Command-line text to values: fields that accept text keep it, others read it as JSON."""
    from kaizen.signatures.fieldtypes import accepts_str

    types = {f.name: f.type for f in signature.inputs}
    values: dict[str, Any] = {}
    for name, text in raw.items():
        if name in types and accepts_str(types[name]):
            values[name] = text
            continue
        try:
            values[name] = json.loads(text)
        except ValueError:
            values[name] = text
    return values


@app.command()
def demo(
    topic: Annotated[
        str | None, typer.Option("--topic", "-t", help="What to debate (default: a set topic).")
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the graphs, run pictures and results.")
    ] = Path("out"),
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Model (litellm name); default: $KAIZEN_MODEL, else the embedded local/smollm2.",
        ),
    ] = None,
) -> None:
    """Run a debate and a consensus on a topic, print the verdict, draw both to --out.

    A weak or failed answer is reported as such (failed nodes, consensus not reached); the
    command fails only when the model cannot be used at all.
    """
    from kaizen.demo import run_demo
    from kaizen.errors import KaizenError

    try:
        run_demo(topic, out, model)
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_INTERRUPTED)
    except KaizenError as exc:
        _fail(str(exc))


def main() -> None:
    """Entry point of the `kaizen` console script and `python -m kaizen`."""
    app()
