"""`kaizen runs`: the runs in the store: list, show, resume, replay, prune.

    kaizen runs list [--store PATH|URL] [--limit N]
    kaizen runs show RUN [--store PATH|URL]
    kaizen runs resume RUN module:attr [--answer ID=JSON ...] [--by NAME] [--store PATH|URL]
    kaizen runs replay RUN module:attr [--store PATH|URL]
    kaizen runs prune --older-than 7d [--store PATH|URL]

The store is `--store` (a file, or a ``postgresql://`` URL), else `$KAIZEN_STORE_URL`, else
`$KAIZEN_HOME/kaizen.db`, else `.kaizen/kaizen.db`. Resume and
replay need the workflow the run ran, named like `kaizen run` names it.
"""

from __future__ import annotations

import datetime
import json
from typing import Annotated, NoReturn

import typer

from kaizen.cli.support import CliError, load_workflow, to_json

runs_app = typer.Typer(name="runs", help="Runs in the store: list, show, resume, replay, prune.",
                       no_args_is_help=True)  # fmt: skip

StoreOption = Annotated[
    str | None,
    typer.Option("--store", help="The store: a file, or a postgresql:// URL (default: "
                 "$KAIZEN_STORE_URL, $KAIZEN_HOME/kaizen.db or .kaizen/kaizen.db)."),
]  # fmt: skip


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return datetime.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")


@runs_app.command("list")
def list_command(store: StoreOption = None, limit: int = 50) -> None:
    """The most recent runs: id, workflow, status, start, nodes checkpointed, recorded."""
    from kaizen.errors import KaizenError
    from kaizen.store.db import Store
    from kaizen.store.runs import list_runs

    try:
        runs = list_runs(Store.open(store), limit)
    except KaizenError as exc:
        _fail(str(exc))
    for run in runs:
        flags = ("checkpointed " if run.checkpoint else "") + ("recorded" if run.recorded else "")
        typer.echo(
            f"{run.run_id}  {run.workflow:<20} {run.status:<10} {_when(run.started)}  "
            f"{run.completed_nodes} node(s) saved  {flags.strip()}"
        )
    if not runs:
        typer.echo("no runs in the store", err=True)


@runs_app.command("show")
def show_command(run_id: str, store: StoreOption = None) -> None:
    """One run as JSON: status, times, parameters, checkpointed nodes, its record."""
    from kaizen.errors import KaizenError
    from kaizen.moments import interrupt_json
    from kaizen.store.db import Store
    from kaizen.store.interrupts import load_interrupts
    from kaizen.store.runs import load_checkpoints, load_run

    try:
        opened = Store.open(store)
        run = load_run(opened, run_id)
        saved = sorted(load_checkpoints(opened, run_id)) if run.checkpoint else []
        asked = [interrupt_json(i) for i in load_interrupts(opened, run_id)]
    except KaizenError as exc:
        _fail(str(exc))
    shown = {
        "run_id": run.run_id, "workflow": run.workflow, "status": run.status,
        "started": _when(run.started), "finished": _when(run.finished),
        "parameters": run.parameters, "checkpointed_nodes": saved, "recorded": run.recorded,
        "interrupts": asked, "record": run.record,
    }  # fmt: skip
    typer.echo(json.dumps(shown, indent=2, default=str))


@runs_app.command("resume")
def resume_command(
    run_id: str,
    target: Annotated[str, typer.Argument(help="The workflow: module:attr or file.py:attr")],
    answer: Annotated[
        list[str] | None,
        typer.Option(
            "--answer",
            help="An interrupt's answer: ID=JSON (repeatable), e.g. "
            "'review/0=true' or 'ask/0={\"city\": \"Oslo\"}'.",
        ),
    ] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who answers.")] = None,
    store: StoreOption = None,
) -> None:
    """Finish a run: what completed is not run again; a waiting run takes its answers."""
    from kaizen.errors import KaizenError
    from kaizen.runtime.local import LocalRuntime

    try:
        answers = _answers(answer or [])
        workflow = load_workflow(target)
        runtime = LocalRuntime(checkpoint=store or True)
        results, record = runtime.resume_with_record(run_id, workflow, answers=answers, by=by)
    except (CliError, KaizenError) as exc:
        _fail(" ".join(str(exc).split()), 1)
    if record.status == "waiting":
        still = ", ".join(i.id for i in record.open_interrupts)
        typer.echo(f"run {run_id} waits again, for: {still}", err=True)
    typer.echo(to_json(results))


def _answers(given: list[str]) -> dict[str, object] | None:
    """`--answer ID=JSON` options as `{id: value}` (a value that is not JSON is a string)."""
    if not given:
        return None
    answers: dict[str, object] = {}
    for item in given:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--answer takes ID=JSON, like 'review/0=true'; got {item!r}")
        try:
            answers[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            answers[key.strip()] = text
    return answers


@runs_app.command("replay")
def replay_command(
    run_id: str,
    target: Annotated[str, typer.Argument(help="The workflow: module:attr or file.py:attr")],
    store: StoreOption = None,
) -> None:
    """Run a recorded run again, every model and tool call served from its recording."""
    from kaizen.durable import replay
    from kaizen.errors import KaizenError

    try:
        workflow = load_workflow(target)
        results, _ = replay(run_id, workflow, path=store)
    except (CliError, KaizenError) as exc:
        _fail(str(exc), 1)
    typer.echo(to_json(results))


@runs_app.command("prune")
def prune_command(
    older_than: Annotated[str, typer.Option("--older-than", help="An age: 7d, 12h, 30m.")],
    store: StoreOption = None,
) -> None:
    """Delete runs older than an age (with their checkpoints and recordings)."""
    from kaizen.errors import KaizenError
    from kaizen.store.db import Store
    from kaizen.store.runs import parse_age, prune

    try:
        count = prune(Store.open(store), parse_age(older_than))
    except ValueError as exc:
        _fail(str(exc))
    except KaizenError as exc:
        _fail(str(exc))
    typer.echo(f"pruned {count} run(s)")
