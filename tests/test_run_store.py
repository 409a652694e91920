"""One run, one store, for every row that belongs to it (issue 21 item 8).

A runtime given a store (`LocalRuntime(checkpoint=PATH)` or `record=PATH`) keeps its runs'
checkpoints there, and also their recordings, their cached calls (when the cache names no
store of its own), their pending approvals (tests/test_audit.py) and, served, their runs and
events: nothing of theirs lands in the default store (`.kaizen/kaizen.db` here).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import kaizen
from kaizen import LocalRuntime
from kaizen.testing import ScriptedModel


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A current directory whose default store would be ./.kaizen/kaizen.db."""
    monkeypatch.delenv("KAIZEN_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_cached_and_recorded_calls_live_in_the_store_of_their_run(elsewhere: Path) -> None:
    path = elsewhere / "runs.db"
    model = ScriptedModel(lambda messages: {"answer": "cached"})
    agent = kaizen.create_agent("qa", "question -> answer", {"model": model, "cache": True})
    workflow = agent.to_workflow().build()
    for runtime in (LocalRuntime(checkpoint=path), LocalRuntime(record=path)):
        results, run_id = runtime.execute(workflow, {"qa": {"question": "q"}})
        assert results["qa"]["answer"] == "cached"
    assert len(model.calls) == 1  # the second run's call came from the run store's cache
    replayed, _ = LocalRuntime(record=path).replay(run_id, workflow)  # a cached call recorded
    assert replayed["qa"]["answer"] == "cached"
    assert not (elsewhere / ".kaizen").exists()


def test_a_runtime_cache_without_a_path_follows_the_run_too(elsewhere: Path) -> None:
    path = elsewhere / "runs.db"
    model = ScriptedModel(lambda messages: {"answer": "once"})
    agent = kaizen.create_agent("qa", "question -> answer", {"model": model})
    workflow = agent.to_workflow().build()
    runtime = LocalRuntime(checkpoint=path, cache=True)
    for _ in range(2):
        results, _ = runtime.execute(workflow, {"qa": {"question": "q"}})
        assert results["qa"]["answer"] == "once"
    assert len(model.calls) == 1
    assert runtime.store.read("SELECT count(*) FROM cache")[0][0] == 1
    assert not (elsewhere / ".kaizen").exists()


def test_a_served_runtime_keeps_its_served_runs_in_its_store(elsewhere: Path) -> None:
    pytest.importorskip("fastapi")
    from kaizen.serve.app import create_app

    runtime = LocalRuntime(checkpoint=elsewhere / "runs.db")
    agent = kaizen.create_agent("qa", "question -> answer", {"model": ScriptedModel(["a"])})
    app = create_app(agent, runtime=runtime, keys=())
    assert app.state.store is runtime.store
    assert not (elsewhere / ".kaizen").exists()
