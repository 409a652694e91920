"""The main job (`make demo`, `kaizen demo`): a debate and a consensus on a topic, drawn, saved.

`run_demo` builds two pattern graphs from role names, runs them on a real model (the embedded
SmolLM2 by default, `KAIZEN_MODEL` or `model=` otherwise) with a live progress display (a
lifecycle hook, `kaizen.cli.progress.RunProgress`), prints the verdict and the consensus, and
writes to `out_dir`, per workflow: `<name>.svg` (the graph), `<name>-run.svg` (the run: status
colours and timeline) and `<name>-results.json` (every node's outputs and the run record).

The embedded model has 135M parameters: prompts are short, replies capped, and a weak or failed
answer is reported as what it is (a failed node, a consensus not reached), never hidden.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kaizen.llm.embedded import LOCAL_MODEL

if TYPE_CHECKING:
    from rich.console import Console

    from kaizen.runtime.record import RunRecord
    from kaizen.workflow.workflow import Workflow

DEFAULT_TOPIC = "Remote work is better than working in an office"
DEBATERS = ("optimist", "pessimist", "pragmatist")
JUDGE = "moderator"
VOTERS = ("economist", "engineer", "ethicist", "skeptic", "analyst")
ROUNDS = 2
# Short replies keep the small model on track and the demo quick; one re-ask on a bad reply.
# The timeout covers a call's wait for the embedded model as well as its generation. At the
# embedded model's default temperature (0.2) five voters with different roles gave the very same
# sentence; 0.5 gives each role its own answer and still keeps the replies on topic
# (benchmarks/demo_quality.py counts both).
# A degenerate answer (a loop like "1.1.1.1", kaizen.text.degenerate) is re-sampled once,
# seeded; one still degenerate is shown marked as such, never hidden (the record notes both).
AGENT_CONFIG: dict[str, Any] = {
    "max_tokens": 200,
    "temperature": 0.5,
    "retries": 1,
    "max_parse_attempts": 2,
    "timeout": 180,
    "resample_degenerate": True,
}


@dataclass
class PatternRun:
    """One workflow of the demo after it ran."""

    name: str
    workflow: Workflow
    results: dict[str, dict[str, Any]]
    record: RunRecord
    files: dict[str, str]


def run_demo(
    topic: str | None = None,
    out_dir: str | Path = "out",
    model: Any = None,
    *,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run the debate and the consensus on `topic`; return a JSON-ready summary of both.

    Raises `ConfigError` when the chosen model cannot be used (the embedded model not installed:
    the message says how to install it or choose another).
    """
    from rich.console import Console

    from kaizen.patterns import create_consensus_workflow, create_debate_workflow

    console = console or Console()
    topic = (topic or "").strip() or DEFAULT_TOPIC
    chosen = _choose_model(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = chosen if isinstance(chosen, str) else repr(chosen)
    own_file = os.environ.get("KAIZEN_LOCAL_MODEL", "").strip()
    if chosen == LOCAL_MODEL and own_file:
        name = f"{LOCAL_MODEL} running {own_file} (KAIZEN_LOCAL_MODEL)"
    console.rule(f"[bold]Kaizen demo[/bold]: {topic}")
    console.print(f"model: [cyan]{name}[/cyan]   output: [cyan]{out}/[/cyan]")

    debate = create_debate_workflow(
        list(DEBATERS),
        topic=topic,
        rounds=ROUNDS,
        judge=JUDGE,
        model=chosen,
        agent_config=AGENT_CONFIG,
        name="debate",
    ).build()
    consensus = create_consensus_workflow(
        list(VOTERS),
        "majority_vote",
        confidence_threshold=0.5,
        question=f"Do you agree with this statement? {topic}",
        options=["agree", "disagree"],
        model=chosen,
        agent_config=AGENT_CONFIG,
        name="consensus",
    ).build()

    debate_run = _run(debate, out, console)
    summary_debate = _debate_summary(debate_run)
    _print_debate(console, summary_debate)
    consensus_run = _run(consensus, out, console)
    summary_consensus = _consensus_summary(consensus_run)
    _print_consensus(console, summary_consensus)
    console.rule("files")
    for run in (debate_run, consensus_run):
        for path in run.files.values():
            console.print(f"  {path}")
    from kaizen.store.db import Store

    console.rule("review in a browser")
    console.print(f"  both runs are in {Store.open().path}: `kaizen ui` (or `make ui`), then")
    for run in (debate_run, consensus_run):
        console.print(f"  http://127.0.0.1:8765/ui/runs/{run.record.run_id}")
    return {
        "topic": topic,
        "model": name,
        "debate": summary_debate,
        "consensus": summary_consensus,
    }


def _choose_model(model: Any) -> Any:
    from kaizen.errors import ConfigError
    from kaizen.llm import local_model_installed

    chosen = model if model not in (None, "") else os.environ.get("KAIZEN_MODEL", "").strip()
    chosen = chosen or LOCAL_MODEL
    if chosen == LOCAL_MODEL and not local_model_installed():
        raise ConfigError(
            f"the demo runs on the embedded model {LOCAL_MODEL!r}, which is not installed. "
            "Run `make setup` (or `make demo`), or pick another model: "
            "`kaizen demo --model openai/gpt-4o-mini` or `export KAIZEN_MODEL=...`"
        )
    return chosen


def _run(workflow: Workflow, out: Path, console: Console) -> PatternRun:
    from kaizen.cli.progress import RunProgress
    from kaizen.cli.support import write_run_files
    from kaizen.runtime.local import LocalRuntime

    # checkpointed and recorded into the default store, so `kaizen ui` shows every node's
    # inputs, outputs, prompts and replies
    runtime = LocalRuntime(failure_policy="continue", checkpoint=True, record=True)
    console.rule(f"[bold]{workflow.name}[/bold] ({len(workflow.nodes)} nodes)")
    with RunProgress(workflow, console, lines=True) as progress:
        results, run_id = runtime.execute(workflow, hooks=[progress])
    record = runtime.get_record(run_id)
    written = write_run_files(workflow, record, results, out, console.print)
    files = {kind: str(path) for kind, path in written.items()}
    return PatternRun(workflow.name, workflow, results, record, files)


def _problems(record: RunRecord) -> dict[str, list[dict[str, str]]]:
    failed = [
        {"node": n.node_id, "error": n.error or ""}
        for n in record.nodes.values()
        if n.status == "failed"
    ]
    skipped = [
        {"node": n.node_id, "reason": n.skip_reason or ""}
        for n in record.nodes.values()
        if n.status == "skipped"
    ]
    return {"failed": failed, "skipped": skipped}


def _weak_answers(record: RunRecord) -> dict[str, dict[str, Any]]:
    """{node: {"resampled": bool, "degenerate": {field: why}}} from the agents' notes."""
    weak: dict[str, dict[str, Any]] = {}
    for node_id, node in record.nodes.items():
        for note in node.notes:
            if note.get("kind") == "resample":
                weak.setdefault(node_id, {"resampled": True, "degenerate": {}})
            elif note.get("kind") == "degenerate":
                entry = weak.setdefault(node_id, {"resampled": True, "degenerate": {}})
                entry["degenerate"] = dict(note.get("why") or {})
    return weak


def _marked(text: str, node_id: str, summary: Mapping[str, Any]) -> str:
    """`text` as shown: escaped, and marked when it is still degenerate after its re-sample."""
    from rich.markup import escape

    weak = summary["weak_answers"].get(node_id)
    if weak and weak["degenerate"]:
        return f"[red]\\[degenerate after a re-sample][/red] {escape(text)}"
    if weak:
        return f"{escape(text)} [dim](re-sampled once)[/dim]"
    return escape(text)


def _run_facts(run: PatternRun) -> dict[str, Any]:
    record = run.record
    return {
        "weak_answers": _weak_answers(record),
        "status": str(record.status),
        "seconds": round((record.finished or time.time()) - record.started, 2),
        "tokens": record.usage.total_tokens,
        "model_calls": record.usage.calls,
        **_problems(record),
        "files": run.files,
    }


def _debate_summary(run: PatternRun) -> dict[str, Any]:
    rounds = []
    for r in range(1, ROUNDS + 1):
        collected = run.results.get(f"round{r}/arguments")
        rounds.append(collected["transcript"] if collected else [])
    return {"verdict": run.results.get(JUDGE), "rounds": rounds, **_run_facts(run)}


def _consensus_summary(run: PatternRun) -> dict[str, Any]:
    outputs = run.results.get("consensus")
    result = outputs["result"].model_dump(mode="json") if outputs else None
    return {"result": result, **_run_facts(run)}


def _print_debate(console: Console, summary: Mapping[str, Any]) -> None:
    from rich.markup import escape
    from rich.panel import Panel

    for r, transcript in enumerate(summary["rounds"], start=1):
        for entry in transcript:
            node_id = f"round{r}/{entry['debater']}"
            console.print(
                f"  round {r} [bold]{entry['debater']}[/bold] "
                f"({entry.get('position', '?')}, {entry.get('confidence', 0):.2f}): "
                f"{_marked(str(entry['argument']), node_id, summary)}"
            )
    verdict = summary["verdict"]
    if verdict is None:
        body = "[red]no verdict[/red]: the judge did not run.\n" + _problem_lines(summary)
    else:
        body = (
            f"position: [bold]{escape(str(verdict.get('position')))}[/bold]   "
            f"confidence: {float(verdict.get('confidence', 0.0)):.2f}\n"
            f"{_marked(str(verdict.get('rationale', '')), JUDGE, summary)}"
        )
        if summary["failed"] or summary["skipped"]:
            body += "\n[yellow]degraded run:[/yellow]\n" + _problem_lines(summary)
    console.print(Panel(body, title="debate verdict", expand=False))


def _print_consensus(console: Console, summary: Mapping[str, Any]) -> None:
    from rich.markup import escape
    from rich.panel import Panel
    from rich.table import Table

    result = summary["result"]
    if result is None:
        body = "[red]no consensus[/red]: no agent voted.\n" + _problem_lines(summary)
        console.print(Panel(body, title="consensus", expand=False))
        return
    table = Table("agent", "answer", "confidence", "rationale", box=None)
    for vote in result["votes"]:
        table.add_row(
            vote["agent"],
            escape(vote["answer"]),
            f"{vote['confidence']:.2f}",
            _marked(vote["rationale"], vote["agent"], summary),
        )
    for failure in result["failures"]:
        table.add_row(failure["agent"], "[red]failed[/red]", "", escape(failure["error"][:70]))
    console.print(table)
    if result["reached"]:
        head = f"[green]reached[/green]: [bold]{escape(str(result['decision']))}[/bold]"
    else:
        head = f"[red]NOT reached[/red]: {escape(str(result['reason']))}"
    body = (
        f"{head}\nrule: {result['rule']}   agreement: {result['agreement']:.0%}   "
        f"confidence: {result['confidence']:.2f}   votes: {len(result['votes'])}/"
        f"{len(result['votes']) + len(result['failures'])}"
    )
    console.print(Panel(body, title="consensus", expand=False))


def _problem_lines(summary: Mapping[str, Any]) -> str:
    from rich.markup import escape

    lines = [f"  failed {f['node']}: {escape(f['error'][:120])}" for f in summary["failed"]]
    lines += [f"  skipped {s['node']}: {escape(s['reason'][:120])}" for s in summary["skipped"]]
    return "\n".join(lines) or "  (no node failed)"


__all__ = ["DEFAULT_TOPIC", "run_demo"]
