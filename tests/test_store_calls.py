"""The model-call cache, record and replay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import kaizen
from kaizen import LocalRuntime, WorkflowBuilder
from kaizen.errors import ReplayMismatchError
from kaizen.store.calls import request_fields, request_key
from kaizen.testing import ScriptedModel

field_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)
requests = st.dictionaries(st.sampled_from(["model", "messages", "tools", "temperature",
                                            "tool_choice", "top_p", "seed"]),
                           field_values, min_size=1)  # fmt: skip


@given(requests, st.randoms())
def test_the_request_key_does_not_depend_on_key_order(request: dict[str, Any], rnd: Any) -> None:
    items = list(request.items())
    rnd.shuffle(items)
    assert request_key(request_fields(dict(items))) == request_key(request_fields(request))


@given(requests, st.text(min_size=1), st.text(min_size=1))
def test_credentials_and_routing_never_change_the_key(
    request: dict[str, Any], key: str, base: str
) -> None:
    with_secrets = {**request, "api_key": key, "api_base": base, "timeout": 3,
                    "extra_headers": {"Authorization": key}}  # fmt: skip
    assert request_key(request_fields(with_secrets)) == request_key(request_fields(request))
    assert key not in str(request_fields(with_secrets)) or key in str(request)


@given(requests, st.sampled_from(["temperature", "tools", "messages", "response_format"]))
def test_every_generation_field_changes_the_key(request: dict[str, Any], name: str) -> None:
    changed = {**request, name: ["something else", request.get(name)]}
    assert request_key(request_fields(changed)) != request_key(request_fields(request))


def test_an_agent_cache_serves_repeats_for_free_and_marks_them(
    store_location: str, tmp_path: Path
) -> None:
    model = ScriptedModel([{"answer": "4"}, {"answer": "second call"}])
    cache = {"path": store_location}
    agent = kaizen.create_agent("calc", "question -> answer", {"model": model, "cache": cache})
    first = agent.execute(question="2+2?")
    again = agent.execute(question="2+2?")
    assert first.answer == again.answer == "4"
    assert len(model.calls) == 1
    record = agent.runtime.get_record(again.metadata["run_id"])
    assert record.usage.cache_hits == 1 and record.usage.cost == 0.0
    # a second agent with the same model and prompt, another process's worth: the store level
    twin = kaizen.create_agent("calc", "question -> answer", {"model": model, "cache": cache})
    assert twin.execute(question="2+2?").answer == "4"
    assert len(model.calls) == 1


def test_sampled_calls_are_not_cached_unless_asked(store_location: str, tmp_path: Path) -> None:
    model = ScriptedModel(lambda messages: {"answer": "x"})
    path = store_location
    config = {"model": model, "temperature": 0.7, "cache": {"path": path}}
    hot = kaizen.create_agent("a", "q -> answer", config)
    hot.execute(q="1")
    hot.execute(q="1")
    assert len(model.calls) == 2
    config = {**config, "cache": {"path": path, "sampled": True}}
    asked = kaizen.create_agent("a", "q -> answer", config)
    asked.execute(q="1")
    asked.execute(q="1")
    assert len(model.calls) == 3


def test_a_bad_cache_option_is_a_config_error() -> None:
    with pytest.raises(kaizen.ConfigError, match="ttl"):
        kaizen.create_agent("a", config={"cache": {"tll": 3}})


def two_agents(model: ScriptedModel) -> Any:
    left = kaizen.create_agent("left", "topic -> answer", {"model": model})
    right = kaizen.create_agent("right", "topic -> answer", {"model": model})
    wf = WorkflowBuilder("pair")
    wf.add_agent(left, "left")
    wf.add_agent(right, "right")
    return wf.build()


def test_a_recorded_run_replays_offline_with_the_same_results(
    store_location: str, tmp_path: Path
) -> None:
    live = ScriptedModel(lambda messages: {"answer": str(len(messages[-1]["content"]))})
    path = store_location
    runtime = LocalRuntime(record=path)
    results, run_id = runtime.execute(two_agents(live), {"topic": "cats and dogs"})
    made = len(live.calls)

    replayed, replay_id = kaizen.replay(run_id, two_agents(live), path=path)
    assert replayed == results and replay_id != run_id
    assert len(live.calls) == made  # nothing more reached the model


def test_a_replay_that_asks_something_else_names_the_node_and_the_difference(
    store_location: str,
    tmp_path: Path,
) -> None:
    model = ScriptedModel(lambda messages: {"answer": "a"})
    path = store_location
    _, run_id = LocalRuntime(record=path).execute(two_agents(model), {"topic": "cats"})

    changed = two_agents(model)
    runtime = LocalRuntime(record=path)
    # same workflow, but the left agent's prompt changes through its parameters
    from kaizen.store.runs import load_run

    info = load_run(runtime.store, run_id)
    with runtime.store.write() as db:
        db.execute("UPDATE runs SET parameters = ? WHERE run_id = ?",
                   ('{"topic": "dogs"}', run_id))  # fmt: skip
    assert info.parameters == {"topic": "cats"}
    with pytest.raises(ReplayMismatchError) as mismatch:
        runtime.replay(run_id, changed)
    assert mismatch.value.node_id in ("left", "right")
    assert "-" in mismatch.value.diff and "cats" in mismatch.value.diff
    assert "dogs" in mismatch.value.diff


def test_replaying_a_run_that_was_not_recorded_is_a_clear_error(
    store_location: str, tmp_path: Path
) -> None:
    with pytest.raises(kaizen.RunNotFoundError):
        kaizen.replay("nothing", two_agents(ScriptedModel([])), path=store_location)
