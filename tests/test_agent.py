"""`agent.execute()`: typed outputs, re-asks, input validation, metadata, errors, async."""

from __future__ import annotations

import asyncio
import json

import pytest

from kaizen.agents import Agent, ExecutionResult, create_agent
from kaizen.errors import (
    ConfigError,
    InputValidationError,
    ModelError,
    OutputParseError,
)
from kaizen.runtime import RunStatus
from kaizen.testing import ScriptedModel

QA = "question: str -> answer: str, confidence: float"


def qa_agent(model: ScriptedModel, **config: object) -> Agent:
    return create_agent("qa", QA, {"model": model, **config})


def last_user_text(call: object) -> str:
    messages = call.messages  # type: ignore[attr-defined]
    return str(messages[-1]["content"])


def test_outputs_are_typed_attributes() -> None:
    model = ScriptedModel([{"answer": "Learning from data.", "confidence": 0.9}])
    result = qa_agent(model).execute(question="What is ML?")
    assert result.answer == "Learning from data."
    assert isinstance(result.confidence, float) and result.confidence == 0.9
    assert result["answer"] == result.answer
    assert result.data == {"answer": "Learning from data.", "confidence": 0.9}
    assert json.loads(result.raw) == {"answer": "Learning from data.", "confidence": 0.9}


def test_values_are_coerced_to_the_field_types() -> None:
    model = ScriptedModel([{"answer": "yes", "confidence": 1}])
    result = qa_agent(model).execute(question="q")
    assert type(result.confidence) is float and result.confidence == 1.0
    model = ScriptedModel(['{"answer": "yes", "confidence": "0.25"}'])
    assert qa_agent(model).execute(question="q").confidence == 0.25


def test_bad_reply_is_re_asked_with_the_errors() -> None:
    model = ScriptedModel(
        [{"answer": "yes", "confidence": "very"}, {"answer": "yes", "confidence": 0.5}]
    )
    result = qa_agent(model).execute(question="q")
    assert result.confidence == 0.5
    assert result.metadata["attempts"] == 2
    assert len(model.calls) == 2
    second = model.calls[1].messages
    assert second[-2]["role"] == "assistant"
    assert "very" in second[-2]["content"]
    assert second[-1]["role"] == "user"
    assert "confidence" in second[-1]["content"]


def test_output_parse_error_after_max_attempts_carries_the_raw_reply() -> None:
    model = ScriptedModel(["not json at all", "still not json", "nope"])
    with pytest.raises(OutputParseError) as info:
        qa_agent(model).execute(question="q")
    assert info.value.raw == "nope"
    assert "after 3 attempt(s)" in str(info.value)
    assert len(model.calls) == 3


def test_max_parse_attempts_is_configurable() -> None:
    model = ScriptedModel(["bad", {"answer": "a", "confidence": 0.1}])
    with pytest.raises(OutputParseError) as info:
        qa_agent(model, max_parse_attempts=1).execute(question="q")
    assert info.value.raw == "bad"
    assert len(model.calls) == 1


@pytest.mark.parametrize(
    ("inputs", "field"),
    [({}, "question"), ({"question": "q", "extra": 1}, "extra"), ({"question": ["x"]}, "question")],
)
def test_inputs_are_validated_before_any_model_call(inputs: dict[str, object], field: str) -> None:
    model = ScriptedModel([{"answer": "a", "confidence": 0.1}])
    with pytest.raises(InputValidationError) as info:
        qa_agent(model).execute(**inputs)
    assert field in str(info.value)
    assert model.calls == []


def test_default_signature_takes_task_and_optional_context() -> None:
    model = ScriptedModel([{"result": "trend report"}, {"result": "second"}])
    agent = create_agent("researcher", config={"model": model})
    assert agent.signature.input_names == ("task", "context")
    assert agent.signature.output_names == ("result",)
    result = agent.execute(task="Research ML trends", context={"focus": "enterprise"})
    assert result.result == "trend report"
    assert "enterprise" in json.dumps(model.calls[0].messages)
    assert agent.execute(task="no context").result == "second"


def test_structured_output_request_carries_the_json_schema() -> None:
    model = ScriptedModel([{"answer": "a", "confidence": 0.1}])
    qa_agent(model).execute(question="q")
    response_format = model.calls[0].response_format
    assert response_format is not None
    assert "confidence" in json.dumps(response_format)


def test_instructions_mode_puts_the_schema_in_the_prompt() -> None:
    model = ScriptedModel([{"answer": "a", "confidence": 0.1}])
    qa_agent(model, structured_output="instructions").execute(question="q")
    call = model.calls[0]
    assert call.response_format is None
    assert "confidence" in json.dumps(call.messages)


def test_metadata_reports_model_usage_attempts_and_run_id() -> None:
    model = ScriptedModel([{"answer": "a", "confidence": 0.1}])
    agent = qa_agent(model)
    result = agent.execute(question="q")
    meta = result.metadata
    for key in (
        "model",
        "latency",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "cost",
        "attempts",
        "provider_attempts",
        "run_id",
    ):
        assert key in meta, key
    assert meta["attempts"] == 1 and meta["provider_attempts"] >= 1
    assert meta["total_tokens"] == meta["prompt_tokens"] + meta["completion_tokens"]
    assert meta["latency"] >= 0


def test_execute_is_a_one_node_workflow_run_with_a_record() -> None:
    model = ScriptedModel([{"answer": "a", "confidence": 0.1}])
    agent = qa_agent(model)
    result = agent.execute(question="q")
    record = agent.runtime.get_record(result.metadata["run_id"])
    assert record.status is RunStatus.COMPLETED
    assert list(record.nodes) == ["qa"]
    assert record.nodes["qa"].node_type in ("AgentNode", "LLMAgentNode")
    assert record.usage.total_tokens == result.metadata["total_tokens"]


def test_execute_async() -> None:
    model = ScriptedModel([{"answer": "async", "confidence": 0.3}])
    result = asyncio.run(qa_agent(model).execute_async(question="q"))
    assert result.answer == "async" and result.confidence == 0.3


def test_execute_async_validates_inputs_first() -> None:
    model = ScriptedModel([{"answer": "a", "confidence": 0.1}])
    with pytest.raises(InputValidationError):
        asyncio.run(qa_agent(model).execute_async(nope=1))
    assert model.calls == []


def test_provider_errors_surface_as_model_error_not_a_node_wrapper() -> None:
    model = ScriptedModel([401])
    with pytest.raises(ModelError) as info:
        qa_agent(model).execute(question="q")
    assert info.value.status == 401


def test_result_attribute_errors_list_the_outputs() -> None:
    result = ExecutionResult({"answer": "a"}, raw="{}", metadata={})
    with pytest.raises(AttributeError, match="outputs are: answer"):
        _ = result.answr
    with pytest.raises(KeyError, match="answer"):
        _ = result["answr"]
    assert "answer" in result and list(result) == ["answer"]
    assert repr(result) == "ExecutionResult(answer='a')"
    assert "answer" in dir(result)


def test_instructions_reach_the_system_message() -> None:
    model = ScriptedModel([{"answer": "a", "confidence": 0.1}])
    qa_agent(model, instructions="Answer like a pirate.").execute(question="q")
    assert "Answer like a pirate." in json.dumps(model.calls[0].messages)


def test_agent_can_execute_many_times_and_concurrently() -> None:
    model = ScriptedModel(lambda messages: {"answer": "same", "confidence": 0.5})
    agent = qa_agent(model)

    async def many() -> list[ExecutionResult]:
        return list(
            await asyncio.gather(*(agent.execute_async(question=f"q{i}") for i in range(10)))
        )

    results = asyncio.run(many())
    assert {r.answer for r in results} == {"same"}
    assert len({r.metadata["run_id"] for r in results}) == 10
    assert agent.execute(question="again").answer == "same"


def test_with_nothing_configured_the_model_is_local_or_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kaizen import llm

    monkeypatch.delenv("KAIZEN_MODEL", raising=False)
    agent = create_agent("idle", "question -> answer")  # creating never needs a model
    if llm.local_model_installed():
        assert agent.settings().model == llm.LOCAL_MODEL
        return
    with pytest.raises(ConfigError, match="KAIZEN_MODEL") as info:
        agent.execute(question="q")
    assert "no model configured" in str(info.value)


def test_prompt_and_system_templates_shape_the_messages() -> None:
    model = ScriptedModel([{"answer": "a", "confidence": 0.1}])
    qa_agent(
        model,
        prompt_template="Q => {{ values.question }}",
        system_template="SYSTEM for {{ outputs | map(attribute='name') | join(',') }}",
    ).execute(question="why?")
    messages = model.calls[0].messages
    assert messages[0]["content"].startswith("SYSTEM for answer,confidence")
    assert messages[-1]["content"] == "Q => why?"


def test_broken_template_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"config key 'prompt_template'.*jinja2"):
        qa_agent(ScriptedModel([]), prompt_template="{% if %}")


def test_sync_execute_works_inside_a_running_event_loop() -> None:
    model = ScriptedModel([{"answer": "from a notebook", "confidence": 0.4}])
    agent = qa_agent(model)

    async def cell() -> ExecutionResult:
        return agent.execute(question="q")  # as a notebook cell would call it

    assert asyncio.run(cell()).answer == "from a notebook"
