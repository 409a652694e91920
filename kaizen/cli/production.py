"""`kaizen audit verify PATH` and `kaizen approve RUN NODE --by NAME`: the production commands.

    kaizen audit verify PATH               exit 0 and the entry count, or 1 and the broken line
    kaizen approve RUN NODE --by NAME [--resume module:attr] [--deny] [--store PATH|URL]

`approve` records the decision in the store; with `--resume` it then finishes the run, as
`kaizen runs resume` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kaizen.cli.runs import StoreOption, _fail
from kaizen.cli.support import CliError, load_workflow, to_json

audit_app = typer.Typer(name="audit", help="Audit logs: verify their hash chain.",
                        no_args_is_help=True)  # fmt: skip


@audit_app.command("verify")
def verify_command(path: Path) -> None:
    """Check that no entry of the audit file was edited, deleted or reordered."""
    from kaizen.errors import AuditChainError
    from kaizen.observe.audit import verify

    try:
        count = verify(path)
    except FileNotFoundError:
        _fail(f"no audit file at {path}")
    except AuditChainError as exc:
        _fail(str(exc), 1)
    typer.echo(f"ok: {count} entries, chain intact")


def approve_command(
    run_id: str,
    node_id: str,
    by: Annotated[str, typer.Option("--by", help="Who approves.")],
    resume: Annotated[
        str | None, typer.Option("--resume", help="Then finish the run: module:attr workflow.")
    ] = None,
    deny: Annotated[bool, typer.Option("--deny", help="Deny instead of approving.")] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (a denied tool call's model reads it).")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Approve (or deny) a node waiting for approval, and optionally finish its run."""
    from kaizen.errors import KaizenError
    from kaizen.observe.policy import approve
    from kaizen.runtime.local import LocalRuntime

    try:
        approve(run_id, node_id, by=by, store=store, approved=not deny, reason=reason)
        typer.echo(f"{'denied' if deny else 'approved'}: run {run_id} node {node_id} by {by}")
        if resume is not None:
            workflow = load_workflow(resume)
            results, _ = LocalRuntime(checkpoint=store or True).resume(run_id, workflow)
            typer.echo(to_json(results))
    except (CliError, KaizenError) as exc:
        _fail(" ".join(str(exc).split()), 1)
