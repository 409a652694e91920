"""The `kaizen` command line: draw a workflow, run it with a progress display, ask an agent.

    kaizen render module:attr -o graph.svg
    kaizen run module:attr --param node.port=value --param port=value [--out DIR]
    kaizen ask "question -> answer, confidence: float" --question "..." [--model M]
    kaizen demo [--topic T] [--out DIR] [--model M]
    kaizen runs list | show RUN | resume RUN module:attr | replay RUN module:attr | prune
    kaizen mcp serve module:attr [--transport stdio|http --host H --port P]
    kaizen serve module:attr [--host H --port P --workers N --store PATH|URL]

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

from kaizen.cli.production import approve_command, audit_app
from kaizen.cli.runs import runs_app
from kaizen.cli.support import (
    CliError,
    load_object,
    load_workflow,
    parse_field_options,
    parse_params,
    to_json,
    write_run_files,
)
from kaizen.text import first_line

if TYPE_CHECKING:
    from kaizen.runtime.record import RunRecord
    from kaizen.workflow.workflow import Workflow

app = typer.Typer(
    name="kaizen",
    help="Kaizen: typed-signature agents compiled into concurrent, drawable workflow graphs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(runs_app)  # kaizen runs list | show | resume | replay | prune
app.add_typer(audit_app)  # kaizen audit verify PATH
app.command("approve")(approve_command)  # kaizen approve RUN NODE --by NAME

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

    from kaizen.cli.progress import RunProgress
    from kaizen.errors import BudgetExceededError
    from kaizen.runtime.local import LocalRuntime

    options: dict[str, Any] = {"failure_policy": "continue" if keep_going else "fail_fast"}
    if max_concurrency is not None:
        options["max_concurrency"] = max_concurrency
    runtime = LocalRuntime(**options)
    run_id = uuid.uuid4().hex
    with RunProgress(workflow, enabled=progress) as display:
        try:
            results, _ = runtime.execute(workflow, parameters, run_id=run_id, hooks=[display])
        except (NodeExecutionError, BudgetExceededError) as exc:
            write_run_files(workflow, runtime.get_record(run_id), exc.results, out, _note)
            _fail(first_line(exc), EXIT_RUN_FAILED)
        except KeyboardInterrupt:
            write_run_files(workflow, runtime.get_record(run_id), None, out, _note)
            _fail("interrupted; the run record shows what finished", EXIT_INTERRUPTED)
        except KaizenError as exc:  # parameters that do not fit
            _fail(str(exc))
    record = runtime.get_record(run_id)
    written = write_run_files(workflow, record, results, out, _note)
    _note("wrote " + ", ".join(str(p) for p in written.values()))
    typer.echo(to_json(results))
    _note(_summary(record))
    if str(record.status) != "completed":
        raise typer.Exit(EXIT_RUN_FAILED)


def _with_cause(exc: BaseException) -> str:
    """`exc`'s message (its type too when it is not one of Kaizen's), and the root cause's."""
    from kaizen.errors import KaizenError

    text = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, KaizenError):
        text = f"{type(exc).__name__}: {text}"
    cause = exc.__cause__ or exc.__context__
    while cause is not None and (cause.__cause__ or cause.__context__) is not None:
        cause = cause.__cause__ or cause.__context__
    if cause is not None and str(cause) not in text:
        text += f" (caused by {type(cause).__name__}: {cause})"
    return " ".join(text.split())  # one line


def _summary(record: RunRecord) -> str:
    from kaizen.render.timeline import format_duration

    took = (
        ""
        if record.finished is None
        else f" in {format_duration(record.finished - record.started)}"
    )
    return f"{record.summary()}: {record.status}{took}"


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
    tool: Annotated[
        list[str] | None,
        typer.Option(
            "--tool",
            "-t",
            help="A tool for the agent: module:attr or path/to/file.py:attr naming a function, "
            "a kaizen.Tool, a toolset (an MCP server) or a list of them. Repeatable.",
        ),
    ] = None,
    stream: Annotated[
        bool,
        typer.Option("--stream/--no-stream", help="Show the reply and tool calls live on stderr."),
    ] = True,
) -> None:
    """Ask an agent once and print its typed outputs as JSON.

    SPEC is a signature such as "question -> answer, confidence: float"; give each input field
    as --<field> VALUE (text for text fields, JSON for the others).

    Example: kaizen ask "question -> answer, confidence: float" --question "What is ML?"
    With tools: kaizen ask "question -> answer" --tool mytools:search --question "..."
    """
    from kaizen.errors import OutputParseError

    try:
        spec, raw_fields = parse_field_options(list(ctx.args))
    except CliError as exc:
        _fail(str(exc))

    from kaizen.agents.facade import create_agent
    from kaizen.cli.progress import AskDisplay
    from kaizen.signatures import create_signature

    display = AskDisplay()
    try:
        tools = [item for target in tool or [] for item in _tools_from(load_object(target))]
        signature = create_signature(spec)
        fields = _typed_fields(signature, raw_fields)
        config = {"model": model} if model else None
        agent = create_agent("ask", signature=signature, config=config, tools=tools)
        if stream:
            agent.add_hook(display)
        try:
            result = agent.execute(**fields)
        finally:
            display.close()
    except OutputParseError as exc:
        raw = exc.raw if len(exc.raw) <= 500 else exc.raw[:499] + "…"
        _fail(f"{exc}\nthe model replied: {raw}")
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_INTERRUPTED)
    except Exception as exc:  # one line with the cause, never a traceback
        _fail(_with_cause(exc))
    if not result.success:  # an agent with tools that hit a limit
        _fail(_with_cause(result.error or RuntimeError(result.stop_reason)), EXIT_RUN_FAILED)
    typer.echo(to_json(result.data))


def _tools_from(value: Any) -> list[Any]:
    """A loaded `--tool` target as a list of tools (a list or tuple of them is spread)."""
    return list(value) if isinstance(value, list | tuple) else [value]


def _typed_fields(signature: Any, raw: dict[str, str]) -> dict[str, Any]:
    """Command-line text to values: fields that accept text keep it, others read it as JSON."""
    from kaizen.signatures.fieldtypes import accepts_str

    types = {f.name: f.type for f in signature.input_fields}
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
    from kaizen.cli.demo import run_demo
    from kaizen.errors import KaizenError

    try:
        run_demo(topic, out, model)
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_INTERRUPTED)
    except KaizenError as exc:
        _fail(str(exc))


mcp_app = typer.Typer(
    name="mcp", help="MCP: serve an agent or a workflow as an MCP server.", no_args_is_help=True
)
app.add_typer(mcp_app)


@mcp_app.command("serve")
def mcp_serve(
    target: Annotated[str, typer.Argument(help="module:attr naming an Agent or a workflow")],
    transport: Annotated[
        str, typer.Option("--transport", "-t", help="stdio, or http (Streamable HTTP at /mcp).")
    ] = "stdio",
    host: Annotated[str, typer.Option("--host", help="Address to listen on (http).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on (http).")] = 8000,
) -> None:
    """Serve an agent or a built workflow as an MCP server with one tool (needs the mcp extra).

    The tool's inputs are the agent's input fields, or the workflow's open inputs; it returns
    the outputs as JSON. Example: kaizen mcp serve flows:qa_agent --transport http --port 8000
    """
    from kaizen.errors import KaizenError

    if transport not in ("stdio", "http"):
        _fail(f"--transport {transport!r}: use stdio or http")
    try:
        from kaizen.mcp.serve import load_target, serve

        resolved = load_target(target)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("mcp", "mcp_types"):
            _fail("kaizen mcp needs the MCP SDK: pip install 'kaizen[mcp]'")
        raise
    except (CliError, KaizenError) as exc:
        _fail(str(exc))
    try:
        serve(resolved, transport=transport, host=host, port=port)
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None


@app.command("serve")
def serve_command(
    target: Annotated[str, typer.Argument(help="module:attr naming an Agent or a workflow")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Worker processes (they share the store).")
    ] = 1,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="Where runs live: a file, or a postgresql:// URL shared by several servers "
            "(default: $KAIZEN_STORE_URL, $KAIZEN_HOME/kaizen.db or .kaizen/kaizen.db).",
        ),
    ] = None,
    max_body: Annotated[
        int, typer.Option("--max-body", min=1, help="Largest request body, in bytes.")
    ] = 1 << 20,
    proxy_headers: Annotated[
        bool,
        typer.Option(
            "--proxy-headers/--no-proxy-headers",
            help="Trust X-Forwarded-For/-Proto from the proxy in front (see uvicorn's "
            "FORWARDED_ALLOW_IPS).",
        ),
    ] = False,
    stream_content: Annotated[
        bool,
        typer.Option(
            "--stream-content/--no-stream-content",
            help="Send agents' replies as `content` events as they arrive (streamed model "
            "calls cost more CPU).",
        ),
    ] = True,
    lease_interval: Annotated[
        float,
        typer.Option(
            "--lease-interval",
            min=0.01,
            help="Seconds between renewals of a worker's leases on its runs.",
        ),
    ] = 2.0,
    lease_expiry: Annotated[
        float,
        typer.Option(
            "--lease-expiry",
            min=0.02,
            help="Seconds a lease lasts unrenewed; then "
            "another worker on the store takes the run over.",
        ),
    ] = 10.0,
    record: Annotated[
        bool,
        typer.Option(
            "--record/--no-record",
            help="Record every model and tool call (the run browser shows prompts and replies; "
            "runs can be replayed).",
        ),
    ] = False,
) -> None:
    """Serve an agent or a workflow over HTTP (needs the serve extra).

    POST /runs starts a run, GET /runs/{id} reads it, GET /runs/{id}/events streams its events
    (Server-Sent Events), POST /runs/{id}/cancel stops it; /openapi.json describes the inputs
    and outputs; /ui is the run browser. Set KAIZEN_SERVE_KEYS=key1,key2 to require an API
    key. See docs/serve.md and docs/ui.md.
    """
    from kaizen.errors import KaizenError

    try:
        import fastapi  # noqa: F401  (the serve extra: fail here, with how to install it)
        import uvicorn  # noqa: F401

        from kaizen.mcp.serve import load_target
        from kaizen.serve.server import serve

        loaded = load_target(target)  # a bad target fails here, in one line
    except ModuleNotFoundError as exc:
        _fail_without_serve_extra(exc, "kaizen serve")
    except (CliError, KaizenError) as exc:
        _fail(str(exc))
    try:
        serve(target, host=host, port=port, workers=workers, store=store, max_body=max_body,
              proxy_headers=proxy_headers, stream_content=stream_content, loaded=loaded,
              lease_interval=lease_interval, lease_expiry=lease_expiry,
              record=record)  # fmt: skip
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _fail_without_serve_extra(exc: ModuleNotFoundError, command: str) -> NoReturn:
    """Exit saying how to install the serve extra when `exc` is its absence; else re-raise."""
    if exc.name and exc.name.split(".")[0] in ("fastapi", "uvicorn", "starlette"):
        _fail(f"{command} needs FastAPI and uvicorn: pip install 'kaizen[serve]'")
    raise exc


UI_BUSY_TIMEOUT = 5.0  # seconds `kaizen ui` waits for a store another process has locked


@app.command("ui")
def ui_command(
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="The store to browse: a file or a postgresql:// URL (default: "
            "$KAIZEN_STORE_URL, $KAIZEN_HOME/kaizen.db or .kaizen/kaizen.db).",
        ),
    ] = None,
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8765,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    allow_actions: Annotated[
        bool,
        typer.Option(
            "--allow-actions",
            help="Let the pages act: cancel runs; with --target also start, answer, resume "
            "and replay them.",
        ),
    ] = False,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            help="module:attr of the agent or workflow whose runs can be started and resumed "
            "from the pages (served as `kaizen serve` serves it).",
        ),
    ] = None,
) -> None:
    """Review runs in a browser: every run in the store, its graph, timeline, nodes, prompts
    and replies (needs the serve extra). Read-only unless --allow-actions. See docs/ui.md."""
    from kaizen.errors import KaizenError

    try:
        import uvicorn

        from kaizen.store.db import Store, default_store_location, is_store_url

        where = store if store is not None else default_store_location()
        if not is_store_url(where) and not Path(where).exists():
            _fail(f"no store at {where}: run something first (`make demo`, `kaizen demo`), "
                  "or point --store at a Kaizen store")  # fmt: skip
        if target is not None:
            from kaizen.mcp.serve import load_target
            from kaizen.serve.app import create_app

            opened = Store.open(where)  # (a server writes runs: the store's own busy timeout)
            app = create_app(load_target(target), store=opened, actions=allow_actions)
        else:
            from kaizen.serve.ui.app import create_browser_app

            opened = Store(where, busy_timeout=UI_BUSY_TIMEOUT)
            app = create_browser_app(opened, allow_actions=allow_actions)
    except ModuleNotFoundError as exc:
        _fail_without_serve_extra(exc, "kaizen ui")
    except (CliError, KaizenError) as exc:
        _fail(str(exc))
    mode = "actions on" if allow_actions else "read-only"
    typer.echo(f"kaizen ui: {opened.path} at http://{host}:{port}/ui ({mode}); Ctrl-C stops it")
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None


def main() -> None:
    """Entry point of the `kaizen` console script and `python -m kaizen`."""
    app()
