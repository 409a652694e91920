"""The process-wide state behind one owner (`kaizen.process`): one call forgets it, a forked
child starts without its parent's, and two runtimes share nothing by accident."""

from __future__ import annotations

import ast
import importlib
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
from tests.test_layout import modules

# every module that keeps process-wide state: the name it registers with kaizen.process, and
# the module-level names that hold the state
STATE = {
    "kaizen.agents.facade": ("agents.facade", {"_default"}),
    "kaizen.llm.http.session": ("llm.http.session", {"_sessions", "_closers"}),
    "kaizen.llm.embedded.model": ("llm.embedded", {"_llama", "_batch_engine", "_weights"}),
    "kaizen.llm.http.openai_compat": ("llm.openai_compat", {"_endpoints"}),
    "kaizen.llm.resilience": ("llm.resilience", {"_breakers", "_limiters", "_watchers"}),
    "kaizen.mcp.session": ("mcp.session", {"_live_connections"}),
    "kaizen.mcp.loop": ("mcp.loop", {"_loop", "_thread", "_closers"}),
    "kaizen.runtime.hooks": ("runtime.hooks", {"_process_hooks"}),
    "kaizen.store.calls": ("store.calls", {"_lrus"}),
    "kaizen.store.db": ("store.db", {"_shared"}),
    "kaizen.store.writer": ("store.writer", {"_writers"}),
}
# module-level names that are not state to forget: definitions, wiring and pure caches, kept for
# the process's life (kaizen/process.py says why)
KEPT = {
    # pure caches, keyed on the environment they were made from
    "kaizen.llm.http.session": {"_ssl_contexts", "_proxies"},
    "kaizen.store.pg_transaction": {"_sql_cache"},  # SQL with ? placeholders as psycopg wants it
    "kaizen.llm.models": {"_strict_cache"},  # whether strict mode takes a schema, by identity
    "kaizen.llm.litellm_adapter": {"_loaded", "_internal_call", "_providers", "_token_prices"},
    "kaizen.llm.resilience": {"node_announcer"},
    "kaizen.nodes.registry": {"_higher_types_loaded"},
    # collectors made per Prometheus registry: the registry keeps them, so forgetting them here
    # would register them twice
    "kaizen.observe.metrics": {"_made"},
    "kaizen.process": {"generation"},
    "kaizen.signatures.fieldtypes": {"_registry", "_registry_version"},
    # (which stores hold a workflow's shape: keyed weakly on the Store, which reset forgets)
    "kaizen.store.runs": {"_fingerprints", "_adapter", "_shapes_stored"},
    "kaizen.testing.scripted": {"_instances"},
    "kaizen.testing.tls": {"_made"},
    "kaizen.workflow.shape": {"_shapes"},
    # the run browser's drawn graphs, by workflow fingerprint (a shape never changes)
    "kaizen.serve.ui.pages": {"_DRAWN", "_drawn_lock"},
}
_CONTAINERS = {"dict", "list", "set", "OrderedDict", "defaultdict", "deque", "WeakSet"}
_CONTAINERS |= {"WeakValueDictionary", "WeakKeyDictionary"}


def module_state(path: Path) -> set[str]:
    """The lower-case module-level names of `path` bound to a mutable container or rebound
    with `global` (upper-case names are constants)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    rebound = {n for node in ast.walk(tree) if isinstance(node, ast.Global) for n in node.names}
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            value: ast.expr | None = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names, value = [node.target.id], node.value
        else:
            continue
        call = value.func if isinstance(value, ast.Call) else None
        called = getattr(call, "id", None) or getattr(call, "attr", None)
        mutable = isinstance(value, ast.Dict | ast.List | ast.Set) or called in _CONTAINERS
        found |= {
            n for n in names if n.lower() == n and n != "__all__" and (mutable or n in rebound)
        }
    return found


def test_all_process_wide_state_is_registered_or_known_to_be_kept() -> None:
    """A new module-level registry must be forgotten by kaizen.process (or listed in KEPT)."""
    unknown = []
    for name, path in sorted(modules().items()):
        known = STATE.get(name, ("", set()))[1] | KEPT.get(name, set())
        unknown += [f"{name}.{state}" for state in sorted(module_state(path) - known)]
    assert not unknown, "process-wide state kaizen.process does not know: " + ", ".join(unknown)


def test_every_module_with_process_wide_state_registers_it() -> None:
    for module in STATE:
        importlib.import_module(module)
    assert {name for name, _ in STATE.values()} <= set(process.names())


class Counter(RunStartHook):
    def __init__(self) -> None:
        self.runs = 0

    def on_run_start(self, event: Any) -> None:
        self.runs += 1


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
