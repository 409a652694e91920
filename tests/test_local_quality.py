"""The embedded model doing its best: degenerate prose caught, prose grammars, repetition control,
the short tool protocol, and bring-your-own GGUF files with clear errors.

Answers of the real model are checked for structure and for the absence of degenerate strings,
never for facts. Tests that run the model use the fixture of tests/test_local_model.py (a skip on
a developer's machine without it, a failure in CI).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kaizen.agents.loop import COMPLETE, JsonProtocol
from kaizen.errors import ModelError
from kaizen.llm import LOCAL_MODEL, complete
from kaizen.llm.embedded import LocalModelError, bounded_schema, gguf_path
from kaizen.llm.embedded.schema import PROSE_MIN_LENGTH
from kaizen.llm.embedded.weights import checked_gguf, weights_for
from kaizen.patterns.roles import SMALL_MODEL_PROSE_MIN, role_agent
from kaizen.testing import ScriptedModel
from kaizen.text import degenerate
from kaizen.tools import tool
from tests.test_local_model import embedded_model  # noqa: F401  (the fixture)

needs_model = pytest.mark.usefixtures("embedded_model")

# -- degenerate prose ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "1.1.1.1.1.1.1.1.1.1",
        "very very very very good",
        "!!!!!!!!!!",
        "12.5 3.4 22 17.0",
        "][ ][ ][ ][",
    ],
)
def test_loops_and_non_prose_are_degenerate(text: str) -> None:
    assert degenerate(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        "Remote work saves time that commuting used to take.",
        "The cost is 12 dollars, paid in 2024.",
        "Wait... what?",
        "",
        "ok",
    ],
)
def test_prose_is_not_degenerate(text: str) -> None:
    assert degenerate(text) is None


@given(
    unit=st.text(alphabet="abc1. ", min_size=1, max_size=6).filter(lambda u: u.strip()),
    times=st.integers(min_value=4, max_value=12),
    before=st.text(alphabet="xyz ", max_size=10),
)
def test_any_short_unit_said_four_times_in_a_row_is_caught(
    unit: str, times: int, before: str
) -> None:
    text = before + unit * times
    if len((unit * times).strip()) >= 8:
        assert degenerate(text) is not None


WORDS = ["remote", "work", "saves", "time", "and", "money", "for", "the", "team", "today"]


@given(st.lists(st.sampled_from(WORDS), unique=True, min_size=1, max_size=len(WORDS)))
def test_a_sentence_that_says_each_word_once_is_prose(words: list[str]) -> None:
    assert degenerate(" ".join(words).capitalize() + ".") is None


@given(st.lists(st.sampled_from(WORDS), min_size=1, max_size=2), st.integers(4, 8))
def test_a_phrase_said_four_times_is_a_loop(phrase: list[str], times: int) -> None:
    text = " ".join(phrase * times)
    if len(" ".join(phrase)) + 1 <= 12:  # a short unit
        assert degenerate(text) is not None


# -- the prose grammar ---------------------------------------------------------------------------


def test_a_string_asking_for_prose_must_start_like_a_sentence() -> None:
    schema = {
        "type": "object",
        "properties": {
            "argument": {"type": "string", "minLength": 20},
            "code": {"type": "string"},
        },
    }
    bounded = bounded_schema(schema)
    pattern = bounded["properties"]["argument"]["pattern"]
    assert re.match(pattern, "Remote work saves commuting time.")
    for bad in ("1.1.1.1.1.1.1.1.1.1.1.1", "][ and so on and so on", 'A "quoted" answer here'):
        assert not re.match(pattern, bad), bad
    assert not re.match(pattern, "Too short")  # the minimum length holds
    assert "pattern" not in bounded["properties"]["code"]  # short strings stay free
    assert bounded["properties"]["code"]["maxLength"] == 100


def test_the_tighter_retry_never_asks_for_less_than_the_minimum() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string", "minLength": 20}}}
    pattern = bounded_schema(schema, string_cap=5)["properties"]["a"]["pattern"]
    assert pattern.endswith("{19,19}$")
    assert PROSE_MIN_LENGTH <= SMALL_MODEL_PROSE_MIN


def test_role_agents_ask_for_prose_on_the_embedded_model_only() -> None:
    embedded = role_agent("optimist", "debater", config={"model": LOCAL_MODEL})
    scripted = role_agent("optimist", "debater", config={"model": ScriptedModel(lambda m: {})})
    by_name = {f.name: f for f in embedded.signature.output_fields}
    assert by_name["argument"].constraints["min_length"] == SMALL_MODEL_PROSE_MIN
    assert "min_length" not in by_name["confidence"].constraints
    assert all(not f.constraints.get("min_length") for f in scripted.signature.output_fields)


def sided_debaters(model: Any) -> dict[str, Any]:
    from kaizen.patterns import create_debate_workflow

    workflow = create_debate_workflow(
        ["optimist", "pessimist", "pragmatist"], topic="Tabs beat spaces", rounds=1, model=model
    ).build()
    names = ("optimist", "pessimist", "pragmatist")
    return {name: workflow.nodes[f"round1/{name}"].agent for name in names}  # type: ignore[attr-defined]


def test_sided_arguments_open_with_their_side_on_the_embedded_model_only() -> None:
    from kaizen.patterns.debate import SIDE_OPENINGS, SIDES

    embedded = sided_debaters(LOCAL_MODEL)
    for name in ("optimist", "pessimist"):
        pattern = embedded[name].output_schema["properties"]["argument"]["pattern"]
        side = SIDES[name]
        for opening in SIDE_OPENINGS[side]:
            assert re.match(pattern, f"{opening} it keeps the team in one room.")
        other = next(s for s in SIDE_OPENINGS if s != side)
        assert not re.match(pattern, f"{SIDE_OPENINGS[other][0]} it keeps the team in one room.")
        assert not re.match(pattern, "Remote work is better than working in an office.")
        assert not re.match(pattern, f'{SIDE_OPENINGS[side][0]} "quoted".')
        # bounded as a prose output is: the grammar can close within the string cap
        assert not re.match(pattern, f"{SIDE_OPENINGS[side][0]} {'a' * 100}")
    assert "pattern" not in embedded["pragmatist"].output_schema["properties"]["argument"]
    scripted = sided_debaters(ScriptedModel(lambda messages: {}))
    for agent in scripted.values():
        assert "pattern" not in agent.output_schema["properties"]["argument"]


def test_the_side_openings_compile_to_a_grammar_llama_cpp_accepts() -> None:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    schema = sided_debaters(LOCAL_MODEL)["pessimist"].output_schema
    grammar = json_schema_to_gbnf(json.dumps(bounded_schema(schema)))
    assert "The main risk is" in grammar and "benefit" not in grammar  # (literals come split)


# -- the short tool protocol ---------------------------------------------------------------------


@tool
def multiply(a: float, b: float) -> float:
    """Multiply two numbers."""
    return a * b


OUTPUT = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
}


def test_the_short_protocol_lists_each_tool_on_one_line_with_an_example() -> None:
    note = JsonProtocol([multiply], OUTPUT, compact=True).system_note()
    assert "- multiply(a: number, b: number): Multiply two numbers." in note
    assert f"- {COMPLETE}(answer: string)" in note
    assert '{"tool": "square"' in note  # the example's tool is not one the grammar admits
    assert "JSON Schema" not in note
    assert "JSON Schema" in JsonProtocol([multiply], OUTPUT).system_note()


def test_once_a_tool_answered_the_short_protocol_asks_for_complete_only() -> None:
    from kaizen.llm.call import prepare
    from kaizen.moments import ToolCallRecord

    protocol = JsonProtocol([multiply], OUTPUT, compact=True)
    base = prepare([{"role": "user", "content": "q"}], model=LOCAL_MODEL)

    def offered(request: Any) -> Any:
        return request.kwargs["response_format"]["json_schema"]["schema"]

    first = offered(protocol.request(base, [], force=False))
    assert "anyOf" in first  # a tool or complete
    protocol.results([ToolCallRecord("call_1", "multiply", {"a": 2, "b": 3}, output="6.0")])
    after = offered(protocol.request(base, [], force=False))
    assert after["properties"]["tool"] == {"const": COMPLETE}
    answer = after["properties"]["arguments"]["properties"]["answer"]
    assert re.match(answer["pattern"], "391.0") and re.match(answer["pattern"], "-40")
    assert not re.match(answer["pattern"], "}}") and not re.match(answer["pattern"], "")


def test_a_failed_tool_leaves_the_choice_open() -> None:
    from kaizen.llm.call import prepare
    from kaizen.moments import ToolCallRecord

    protocol = JsonProtocol([multiply], OUTPUT, compact=True)
    base = prepare([{"role": "user", "content": "q"}], model=LOCAL_MODEL)
    protocol.results([ToolCallRecord("call_1", "multiply", {"a": "x"}, error="bad argument")])
    schema = protocol.request(base, [], force=False).kwargs["response_format"]
    assert "anyOf" in schema["json_schema"]["schema"]


# -- bring your own GGUF: errors that name the file ----------------------------------------------


def test_a_missing_file_is_named_with_where_it_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nope.gguf"
    monkeypatch.setenv("KAIZEN_LOCAL_MODEL", str(missing))
    with pytest.raises(LocalModelError, match="KAIZEN_LOCAL_MODEL") as caught:
        weights_for(LOCAL_MODEL)
    assert str(missing) in str(caught.value) and "does not exist" in str(caught.value)
    with pytest.raises(LocalModelError, match="is a folder"):
        checked_gguf(tmp_path, "a test")


def test_a_file_that_is_not_gguf_is_refused_before_loading(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_text("<html>not a model</html>")
    with pytest.raises(LocalModelError, match="is not a GGUF file") as caught:
        weights_for(f"local/{fake}")
    assert str(fake) in str(caught.value) and "convert_hf_to_gguf" in str(caught.value)
    with pytest.raises(ModelError) as through_a_call:
        complete([{"role": "user", "content": "hi"}], model=f"local/{fake}", max_tokens=4)
    assert "is not a GGUF file" in str(through_a_call.value)


def test_an_unknown_local_name_says_what_a_local_name_may_be() -> None:
    with pytest.raises(LocalModelError, match=r"local/<path to a \.gguf file>"):
        weights_for("local/llama3")


# -- with the real model -------------------------------------------------------------------------


@pytest.mark.local_model
@needs_model
def test_a_gguf_named_by_path_runs_through_its_own_engine() -> None:
    from kaizen.llm.embedded import model

    shipped = gguf_path()
    assert shipped is not None
    name = f"local/{shipped}"
    schema = {
        "type": "object",
        "properties": {"word": {"type": "string"}},
        "required": ["word"],
    }
    reply = complete(
        [{"role": "user", "content": "One word for rain."}],
        model=name,
        response_schema=schema,
        max_tokens=32,
    )
    assert isinstance(json.loads(reply.text)["word"], str)
    assert shipped in model._batch_engine  # the file as given, not the converted default


@pytest.mark.local_model
@needs_model
def test_a_model_without_a_chat_template_is_refused_by_name(tmp_path: Path) -> None:
    shipped = gguf_path()
    assert shipped is not None
    bare = tmp_path / "bare.gguf"
    drop = ["--remove-metadata", "tokenizer.chat_template", "--force"]
    subprocess.run(
        [sys.executable, "-m", "gguf.scripts.gguf_new_metadata", str(shipped), str(bare), *drop],
        check=True,
        capture_output=True,
    )
    with pytest.raises(ModelError, match="no chat template") as caught:
        complete([{"role": "user", "content": "hi"}], model=f"local/{bare}", max_tokens=4)
    assert str(bare) in str(caught.value)


@pytest.mark.local_model
@needs_model
def test_a_prompt_longer_than_the_context_names_the_model_and_what_to_do() -> None:
    with pytest.raises(Exception, match=r"holds \d+: shorten the prompt") as caught:
        complete([{"role": "user", "content": "rain " * 9000}], model=LOCAL_MODEL, max_tokens=4)
    assert "SmolLM2" in str(caught.value)


@pytest.mark.local_model
@needs_model
def test_dry_on_the_prompt_stops_a_verbatim_copy_and_only_with_it() -> None:
    from kaizen.llm.embedded.batching import Request, Sampling
    from kaizen.llm.embedded.model import _engine

    engine = _engine()
    sentence = (
        "The benefits of remote work outweigh the drawbacks of working in an office every "
        "single day."
    )
    prompt, stops = engine.chat_prompt(
        [{"role": "user", "content": f"Repeat this sentence exactly: {sentence}"}]
    )

    def reply(sampling: Sampling) -> str:
        request = Request(prompt=list(prompt), max_tokens=40, sampling=sampling, stop=stops)
        return engine.submit(request).result().text.strip()

    assert reply(Sampling(temperature=0)) == sentence  # greedy, no penalties: it copies
    copied = reply(Sampling(temperature=0, dry_multiplier=0.8, penalize_prompt=True))
    assert copied != sentence and degenerate(copied) is None


@pytest.mark.local_model
@needs_model
def test_the_demo_roles_answer_in_prose_on_the_embedded_model() -> None:
    """Structure, not facts: every argument of a two-round debate is prose, never a loop."""
    from kaizen.cli.demo import AGENT_CONFIG
    from kaizen.patterns import create_debate_workflow
    from kaizen.runtime.local import LocalRuntime

    workflow = create_debate_workflow(
        ["optimist", "pessimist"],
        topic="Tabs beat spaces",
        rounds=2,
        model=LOCAL_MODEL,
        agent_config=AGENT_CONFIG,
    ).build()
    results, _ = LocalRuntime(failure_policy="continue").execute(workflow)
    for node in ("round1/optimist", "round1/pessimist", "round2/optimist", "round2/pessimist"):
        argument = results[node]["argument"]
        assert len(argument) >= SMALL_MODEL_PROSE_MIN and argument[0].isalpha(), argument
        assert degenerate(argument) is None, argument


# -- honest when weak: one seeded re-sample, noted ------------------------------------------------

PROSE_SIGNATURE = 'topic: str -> argument: str (min_length=20) "one sentence"'


def run_one_agent(replies: list[str], **config: Any) -> tuple[Any, Any, ScriptedModel]:
    """An agent in a one-node workflow, so its notes land in the run record."""
    from kaizen import Agent
    from kaizen.agents.node import AgentNode
    from kaizen.runtime.local import LocalRuntime
    from kaizen.workflow.builder import WorkflowBuilder

    model = ScriptedModel([json.dumps({"argument": text}) for text in replies])
    agent = Agent("arguer", PROSE_SIGNATURE, {"model": model, **config})
    builder = WorkflowBuilder("one")
    builder.add_node_instance(AgentNode("arguer", agent=agent))
    runtime = LocalRuntime()
    results, run_id = runtime.execute(builder.build(), parameters={"arguer": {"topic": "t"}})
    return results["arguer"], runtime.get_record(run_id).nodes["arguer"], model


def test_a_degenerate_answer_is_asked_for_once_more_with_a_seed() -> None:
    loop = "1.1.1.1.1.1.1.1.1.1.1.1.1"
    good = "Remote work saves an hour of commuting every day."
    outputs, node, model = run_one_agent([loop, good], resample_degenerate=True)
    assert outputs["argument"] == good
    assert [n["kind"] for n in node.notes] == ["resample"]
    assert node.notes[0]["why"]["argument"].startswith("repeats")
    assert "seed" not in model.calls[0].params and model.calls[1].params["seed"] == 7


def test_one_still_degenerate_is_kept_and_marked_not_hidden() -> None:
    loop = "1.1.1.1.1.1.1.1.1.1.1.1.1"
    outputs, node, model = run_one_agent([loop, loop], resample_degenerate=True)
    assert outputs["argument"] == loop
    assert [n["kind"] for n in node.notes] == ["resample", "degenerate"]
    assert len(model.calls) == 2


def test_without_the_option_nothing_is_re_sampled() -> None:
    loop = "1.1.1.1.1.1.1.1.1.1.1.1.1"
    outputs, node, model = run_one_agent([loop, "never asked for"])
    assert outputs["argument"] == loop and not node.notes and len(model.calls) == 1


def test_the_demo_shows_a_still_degenerate_answer_marked() -> None:
    import io

    from rich.console import Console

    from kaizen.cli.demo import _print_debate

    def said(debater: str, position: str, argument: str) -> dict[str, Any]:
        return {"debater": debater, "position": position, "confidence": 0.5, "argument": argument}

    summary = {
        "rounds": [
            [
                said("optimist", "for", "1.1.1.1.1.1.1.1"),
                said("pessimist", "against", "Offices keep teams close."),
            ]
        ],
        "verdict": {"position": "for", "confidence": 0.5, "rationale": "The optimist was clearer."},
        "failed": [],
        "skipped": [],
        "weak_answers": {
            "round1/optimist": {"resampled": True, "degenerate": {"argument": "repeats"}},
            "round1/pessimist": {"resampled": True, "degenerate": {}},
        },
    }  # fmt: skip
    console = Console(file=io.StringIO(), width=200)
    _print_debate(console, summary)
    shown = console.file.getvalue()
    assert "[degenerate after a re-sample] 1.1.1.1.1.1.1.1" in shown
    assert "Offices keep teams close. (re-sampled once)" in shown


@pytest.mark.local_model
@needs_model
def test_a_grammar_llama_cpp_refuses_fails_only_its_own_request() -> None:
    from kaizen.llm.embedded.batching import Request, Sampling
    from kaizen.llm.embedded.model import _engine

    engine = _engine()
    prompt, stops = engine.chat_prompt([{"role": "user", "content": "Say hello."}])
    bad = Request(prompt=list(prompt), max_tokens=8, grammar=r"root ::= [\s]+", stop=stops)
    good = Request(prompt=list(prompt), max_tokens=8, sampling=Sampling(temperature=0), stop=stops)
    engine.submit(bad)
    engine.submit(good)
    with pytest.raises(ValueError, match="rejected the grammar"):
        bad.future.result(timeout=120)
    assert good.future.result(timeout=120).text.strip()
    assert engine.stats()["running"] == 0
