"""Agent memory: the ADR's example across processes, search, pruning, namespaces, nodes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kaizen
from kaizen import LocalRuntime, WorkflowBuilder
from kaizen.store.memory import MEMORY_HEADER, Memory

ADR = textwrap.dedent(
    """
    import sys, kaizen
    from kaizen.testing import ScriptedModel
    model = ScriptedModel(lambda messages: {"result": "noted"})
    agent = kaizen.create_agent("assistant", {"model": model})
    agent.enable_memory(provider=sys.argv[1])
    agent.execute(task=sys.argv[2])
    print(model.calls[0].messages[0]["content"])
    """
)


@pytest.mark.parametrize("provider", ["sqlite", "vector_db"])
def test_the_adr_example_remembers_across_processes(tmp_path: Path, provider: str) -> None:
    script = tmp_path / "adr.py"
    script.write_text(ADR)
    env = {**os.environ, "KAIZEN_HOME": str(tmp_path / "home")}

    def execute(task: str) -> str:
        done = subprocess.run(
            [sys.executable, str(script), provider, task], env=env, capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    first = execute("Remember: User prefers technical details")
    assert MEMORY_HEADER not in first
    second = execute("Explain neural networks")
    assert MEMORY_HEADER in second
    assert "task: Remember: User prefers technical details | result: noted" in second


def test_search_ranks_matching_words_over_mere_recency(tmp_path: Path) -> None:
    memory = Memory("a", path=tmp_path / "k.db")
    memory.add("the user likes bullet points")
    for n in range(5):
        memory.add(f"unrelated chatter {n}")
    best = memory.search("bullet points please", k=3)
    assert best[0].text == "the user likes bullet points"
    assert [m.text for m in memory.search("zzz", k=2)] == ["unrelated chatter 4",
                                                            "unrelated chatter 3"]  # fmt: skip


def test_namespaces_sessions_clear_and_no_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    alice = Memory("agent", path=path, session="alice")
    bob = Memory("agent", path=path, session="bob")
    other = Memory("other", path=path, session="alice")
    alice.add("alice likes tea")
    alice.add("alice likes tea")
    bob.add("bob likes coffee")
    assert len(alice) == 1 and len(bob) == 1 and len(other) == 0
    assert [m.text for m in bob.search("likes", 5)] == ["bob likes coffee"]
    assert alice.clear() == 1
    assert len(alice) == 0 and len(bob) == 1


def test_max_history_and_ttl_prune(tmp_path: Path) -> None:
    memory = Memory("a", path=tmp_path / "k.db", max_history=3)
    for n in range(5):
        memory.add(f"fact {n}")
    assert sorted(m.text for m in memory.search("fact", 10)) == ["fact 2", "fact 3", "fact 4"]
    short = Memory("b", path=tmp_path / "k.db", ttl=0.2)
    short.add("fleeting")
    time.sleep(0.3)
    assert short.search("fleeting", 5) == []
    short.add("fresh")  # a write prunes the expired ones
    assert len(short) == 1


def test_the_memory_provider_stays_in_this_process(tmp_path: Path) -> None:
    memory = Memory("a", provider="memory")
    memory.add("only here")
    assert [m.text for m in memory.search("here", 1)] == ["only here"]
    assert len(Memory("a", provider="memory")) == 0


def test_failed_executions_are_not_remembered(tmp_path: Path) -> None:
    from kaizen.testing import ScriptedModel

    model = ScriptedModel([ValueError("the provider broke")])
    agent = kaizen.create_agent("a", {"model": model, "raise_on_error": False, "retries": 0})
    memory = agent.enable_memory(path=tmp_path / "k.db")
    assert not agent.execute(task="x").success
    assert len(memory) == 0


def test_memory_nodes_read_and_write_in_a_graph(tmp_path: Path) -> None:
    memory = Memory("notes", path=tmp_path / "k.db")
    wf = WorkflowBuilder("notes")
    wf.add_node("MemoryWrite", "keep", {"memory": memory})
    wf.add_node("MemoryRead", "recall", {"memory": memory})
    results, _ = LocalRuntime().execute(
        wf.build(), {"keep": {"text": "the deploy key rotates monthly"},
                     "recall": {"query": "deploy key"}},
    )  # fmt: skip
    assert results["keep"]["id"] >= 1
    # both ran at once; a second read sees it
    again, _ = LocalRuntime().execute(
        wf.build(), {"keep": {"text": "x"}, "recall": {"query": "deploy key"}}
    )
    assert again["recall"]["memories"][0] == "the deploy key rotates monthly"
    assert again["recall"]["context"].startswith(MEMORY_HEADER)
    assert "MemoryRead" in wf.build().to_mermaid()


_WORDS = ["tea", "coffee", "cake", "deploy", "key", "rotates", "monthly", "the"]


@settings(max_examples=60, deadline=None)
@given(
    mine=st.lists(st.lists(st.sampled_from(_WORDS), min_size=1, max_size=5), max_size=12),
    theirs=st.lists(st.lists(st.sampled_from(_WORDS), min_size=1, max_size=5), max_size=12),
    query=st.lists(st.sampled_from([*_WORDS, "absent"]), min_size=1, max_size=3),
)
def test_search_ranks_exactly_the_best_matches_of_its_own_scope(
    mine: list[list[str]], theirs: list[list[str]], query: list[str]
) -> None:
    """The BM25 candidates come from a small pool of the best matches across every agent,
    grown when other agents crowd this one out: they are this scope's best, as a full
    ranking of its matches would give them (pool and candidates shrunk to exercise that)."""
    from kaizen.store import Store
    from kaizen.store import memory as memory_module

    store = Store(":memory:")
    me, other = Memory("me", path=store), Memory("other", path=store)
    for words in mine:
        me.add(" ".join(words))
    for words in theirs:
        other.add(" ".join(words))
    terms = me._informative(query)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(memory_module, "_POOL", 2)
        patch.setattr(memory_module, "_CANDIDATES", 3)
        found = me._matching(terms, ("me", ""), "") if terms else []
    if not terms:
        return
    match = " OR ".join(f'"{w}"' for w in terms)
    everything = store.read(
        "SELECT m.id, f.rank FROM memories_fts f JOIN memories m ON m.id = f.rowid"
        " WHERE memories_fts MATCH ? AND m.namespace = 'me' ORDER BY f.rank",
        (match,),
    )
    rank = dict(everything)
    assert [rank[i] for i in found] == [r for _, r in everything][:3]


def test_words_nearly_every_memory_holds_do_not_bury_the_informative_one(tmp_path: Path) -> None:
    memory = Memory("a", path=tmp_path / "k.db")
    memory.add("task: what does the user drink | result: green tea")
    for n in range(30):
        memory.add(f"task: chatter number {n} | result: the task is done")
    best = memory.search("what is the task result about tea", k=2)
    assert best[0].text == "task: what does the user drink | result: green tea"
    assert memory._informative(["what", "is", "the", "task", "result", "about", "tea"]) == ["tea"]
    assert memory._informative(["task", "result"]) == ["task"]  # all common: the rarest stays
