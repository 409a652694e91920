"""The demo (`kaizen demo`): files written, verdict and consensus reported, weak answers honest."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from kaizen.cli.demo import DEFAULT_TOPIC, run_demo
from kaizen.errors import ConfigError
from kaizen.testing import ScriptedModel

Messages = list[dict[str, Any]]


def model(*, voters_fail: bool = False, judge_garbage: bool = False) -> ScriptedModel:
    def reply(messages: Messages) -> Any:
        system = str(messages[0]["content"])
        if "rule on the topic" in system:
            if judge_garbage:
                return "I cannot decide"
            return {"position": "against", "rationale": "risks win", "confidence": 0.75}
        if "Debate the topic" in system:
            side = "for" if "optimist" in system else "against"
            return {"position": side, "argument": f"{side} argument", "confidence": 0.6}
        if voters_fail and ("ethicist" in system or "skeptic" in system or "analyst" in system):
            return 500
        return {"answer": "agree", "confidence": 0.8, "rationale": "it helps"}

    return ScriptedModel(reply)


@pytest.fixture(autouse=True)
def demo_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo writes its runs to the default store: here, one of the test's own."""
    monkeypatch.setenv("KAIZEN_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / "kaizen.db"


def quiet() -> Console:
    return Console(file=io.StringIO(), width=100)


def test_demo_writes_graphs_runs_and_results(tmp_path: Path) -> None:
    summary = run_demo("Tabs beat spaces", tmp_path / "out", model=model(), console=quiet())
    out = tmp_path / "out"
    for name in ("debate", "consensus"):
        for suffix in (".svg", "-run.svg"):
            assert "<svg" in (out / f"{name}{suffix}").read_text()
        data = json.loads((out / f"{name}-results.json").read_text())
        assert data["workflow"] == name and data["record"]["status"] == "completed"
    assert summary["topic"] == "Tabs beat spaces"
    assert summary["debate"]["verdict"] == {
        "position": "against",
        "rationale": "risks win",
        "confidence": 0.75,
    }
    assert [len(r) for r in summary["debate"]["rounds"]] == [3, 3]
    consensus = summary["consensus"]["result"]
    assert consensus["reached"] and consensus["decision"] == "agree"
    assert len(consensus["votes"]) == 5
    json.dumps(summary)  # JSON-ready


def test_demo_reports_weak_runs_honestly(tmp_path: Path) -> None:
    summary = run_demo(
        None, tmp_path, model=model(voters_fail=True, judge_garbage=True), console=quiet()
    )
    assert summary["topic"] == DEFAULT_TOPIC
    assert summary["debate"]["verdict"] is None
    assert summary["debate"]["status"] == "failed"
    assert [f["node"] for f in summary["debate"]["failed"]] == ["moderator"]
    consensus = summary["consensus"]["result"]
    assert not consensus["reached"] and "quorum" in consensus["reason"]
    assert {f["agent"] for f in consensus["failures"]} == {"ethicist", "skeptic", "analyst"}
    assert summary["consensus"]["status"] == "failed"


def test_demo_without_the_embedded_model_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kaizen.llm

    monkeypatch.delenv("KAIZEN_MODEL", raising=False)
    monkeypatch.setattr(kaizen.llm, "local_model_installed", lambda: False)
    with pytest.raises(ConfigError, match="make setup"):
        run_demo("t", tmp_path, console=quiet())


def test_cli_demo_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import kaizen.llm
    from kaizen.cli import app

    runner = CliRunner()
    shown = runner.invoke(app, ["demo", "--help"])
    assert shown.exit_code == 0
    for option in ("--topic", "--out", "--model"):
        assert option in shown.output
    monkeypatch.delenv("KAIZEN_MODEL", raising=False)
    monkeypatch.setattr(kaizen.llm, "local_model_installed", lambda: False)
    refused = runner.invoke(app, ["demo", "--out", str(tmp_path)])
    assert refused.exit_code == 2
    assert "make setup" in refused.output


def test_demo_runs_are_in_the_store_for_the_run_browser(tmp_path: Path, demo_store: Path) -> None:
    """`kaizen ui` after the demo shows both runs: checkpointed (every node's outputs) and
    recorded (every prompt and reply)."""
    from kaizen.store.browse import run_details, runs_page
    from kaizen.store.db import Store

    console = Console(file=io.StringIO(), width=200)
    run_demo("Tabs beat spaces", tmp_path / "out", model=model(), console=console)
    store = Store.open(demo_store)
    rows, _ = runs_page(store)
    assert sorted(r.workflow for r in rows) == ["consensus", "debate"]
    assert all(r.status == "completed" and r.checkpointed and r.recorded for r in rows)
    debate = next(r for r in rows if r.workflow == "debate")
    details = run_details(store, debate.run_id)
    assert details is not None and details.shape is not None
    assert set(details.outputs) == set(details.shape.nodes)
    assert sum(len(calls) for calls in details.calls.values()) == 7  # 6 arguments, 1 verdict
    assert f"/ui/runs/{debate.run_id}" in console.file.getvalue()  # type: ignore[attr-defined]
