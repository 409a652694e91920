"""The process-wide state behind one owner (`kaizen.process`): one call forgets it, a forked
child starts without its parent's, and two runtimes share nothing by accident."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import pytest

import kaizen
from kaizen import LocalRuntime, process
from kaizen.errors import ConfigError, RunNotFoundError
from kaizen.llm.resilience import BreakerSettings, breaker_for, breakers, limiter_for
from kaizen.runtime.hooks import RunStartHook, add_process_hook, process_hooks
from kaizen.store.db import Store
from kaizen.store.runs import load_run
from kaizen.testing import ScriptedModel

# every module that keeps process-wide state, and the name it registers (kaizen.process)
REGISTRIES = {
    "kaizen.llm.resilience": "llm.resilience",
    "kaizen.llm.http1": "llm.http1",
    "kaizen.llm.http2": "llm.http2",
    "kaizen.llm.openai_compat": "llm.openai_compat",
    "kaizen.llm.local": "llm.local",
    "kaizen.store.db": "store.db",
    "kaizen.store.writer": "store.writer",
    "kaizen.store.calls": "store.calls",
    "kaizen.runtime.hooks": "runtime.hooks",
    "kaizen.tools.runner": "tools.runner",
    "kaizen.mcp.loop": "mcp.loop",
    "kaizen.mcp.client": "mcp.client",
    "kaizen.agents.facade": "agents.facade",
}


class Counter(RunStartHook):
    def __init__(self) -> None:
        self.runs = 0

    def on_run_start(self, **_: Any) -> None:
        self.runs += 1


def test_every_module_with_process_wide_state_registers_it() -> None:
    import importlib

    for module in REGISTRIES:
        importlib.import_module(module)
    assert set(REGISTRIES.values()) | {"llm.http2.bridge"} <= set(process.names())


def test_one_call_forgets_breakers_limiters_process_hooks_and_the_default_agents() -> None:
    breaker_for("openai/gpt-x", BreakerSettings())
    limiter_for("openai/gpt-x", 60, None)
    add_process_hook(Counter())
    agent = kaizen.create_agent("remembered", "question -> answer")  # held: the registry is weak
    assert breakers() and process_hooks() and kaizen.get_agent("remembered") is agent

    process.reset()

    assert breakers() == [] and process_hooks() == ()
    with pytest.raises(ConfigError, match="remembered"):
        kaizen.get_agent("remembered")


def test_a_reset_part_that_fails_does_not_stop_the_others() -> None:
    add_process_hook(Counter())

    def broken() -> None:
        raise RuntimeError("cannot forget")

    process.register("tests.broken", broken)
    try:
        process.reset()
    finally:
        process.state._entries.pop("tests.broken")
    assert process_hooks() == ()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_starts_without_its_parents_state(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "k.db")
    store.read("SELECT 1")  # this thread's connection, opened in the parent
    parent_connection = store.connection()
    breaker_for("openai/gpt-x", BreakerSettings())
    add_process_hook(Counter())
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # forking a threaded process
        pid = os.fork()
    if pid == 0:  # the child: report what it sees, then leave at once
        try:
            seen = {
                "breakers": len(breakers()),
                "hooks": len(process_hooks()),
                "same_store": Store.open(tmp_path / "k.db") is store,
                "own_connection": store.connection() is not parent_connection,
                "reads": store.read("SELECT 41 + 1")[0][0],
            }
            os.write(write, json.dumps(seen).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        seen = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert seen == {
        "breakers": 0, "hooks": 0, "same_store": False, "own_connection": True, "reads": 42,
    }  # fmt: skip
    # the parent's own state is untouched
    assert len(breakers()) == 1 and len(process_hooks()) == 1
    assert store.connection() is parent_connection


def test_two_runtimes_with_their_own_stores_share_no_runs_and_no_cache(tmp_path: Path) -> None:
    model = ScriptedModel(lambda messages: {"answer": "4"})
    first = LocalRuntime(checkpoint=tmp_path / "a.db", cache={"path": str(tmp_path / "a.db")})
    second = LocalRuntime(checkpoint=tmp_path / "b.db", cache={"path": str(tmp_path / "b.db")})
    agent = kaizen.create_agent("calc", "question -> answer", {"model": model})
    workflow = agent.to_workflow().build()
    _, run_a = first.execute(workflow, {"calc": {"question": "2+2?"}})
    _, run_b = second.execute(workflow, {"calc": {"question": "2+2?"}})
    # each store holds its own runtime's run only
    assert load_run(first.store, run_a).status == "completed"
    assert load_run(second.store, run_b).status == "completed"
    with pytest.raises(RunNotFoundError):
        load_run(first.store, run_b)
    with pytest.raises(RunNotFoundError):
        load_run(second.store, run_a)
    # the second runtime's cache did not answer from the first's: the model was asked twice
    assert len(model.calls) == 2
    assert second.get_record(run_b).usage.cache_hits == 0
    # and each answers its own repeats
    _, again = first.execute(workflow, {"calc": {"question": "2+2?"}})
    assert len(model.calls) == 2 and first.get_record(again).usage.cache_hits == 1
    assert first.store is not second.store
