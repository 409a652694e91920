"""kaizen.testing.ScriptedModel: every reply kind, `.calls`, the real call flow in-process (the
default transport: no litellm on the path) and through litellm (``transport="litellm"``)."""

from __future__ import annotations

import asyncio
import json
import pickle
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from kaizen.errors import ModelError
from kaizen.flow import run_sync
from kaizen.llm import ModelReply, acomplete, complete
from kaizen.llm.call import model_call, prepare
from kaizen.testing import ScriptedCall, ScriptedHTTPError, ScriptedModel, ScriptError

pytestmark = pytest.mark.timeout(120)

SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
    "additionalProperties": False,
}


@pytest.fixture(params=["auto", "litellm"])
def transport(request: pytest.FixtureRequest) -> str:
    """Each test that takes it runs in-process (the default) and through litellm's provider."""
    return str(request.param)


def ask(
    model: ScriptedModel, text: str = "hello", transport: str = "auto", **options: object
) -> ModelReply:
    options.setdefault("backoff", 0.01)
    messages = [{"role": "user", "content": text}]
    return complete(messages, model=model, transport=transport, **options)  # type: ignore[arg-type]


def test_dict_reply_is_sent_as_json(transport: str) -> None:
    model = ScriptedModel([{"answer": "Paris", "confidence": 0.9}])
    reply = ask(model, transport=transport)
    assert json.loads(reply.text) == {"answer": "Paris", "confidence": 0.9}
    assert reply.model == model.model_name
    assert reply.model.startswith("kaizen-scripted/")
    assert reply.finish_reason == "stop"


def test_list_reply_is_sent_as_json() -> None:
    assert json.loads(ask(ScriptedModel([[1, 2, 3]])).text) == [1, 2, 3]


def test_string_reply_is_sent_verbatim() -> None:
    assert ask(ScriptedModel(['{"answer": "unclosed'])).text == '{"answer": "unclosed'


def test_replies_are_consumed_in_order_then_exhaustion_is_a_clear_error(transport: str) -> None:
    model = ScriptedModel(["one", "two"])
    assert [ask(model, transport=transport).text, ask(model, transport=transport).text] == [
        "one",
        "two",
    ]
    assert model.remaining == 0
    with pytest.raises(ModelError, match="out of replies") as caught:
        ask(model, transport=transport)
    assert isinstance(caught.value.__cause__, ScriptError)
    assert caught.value.retryable is False
    assert caught.value.attempts == 1


def test_dict_script_picks_the_reply_by_text_in_the_last_message() -> None:
    model = ScriptedModel({"France": {"answer": "Paris"}, "Japan": {"answer": "Tokyo"}})
    assert json.loads(ask(model, "capital of Japan?").text) == {"answer": "Tokyo"}
    assert json.loads(ask(model, "capital of France?").text) == {"answer": "Paris"}
    assert json.loads(ask(model, "France again").text) == {"answer": "Paris"}  # reusable
    with pytest.raises(ModelError, match="no scripted key"):
        ask(model, "capital of Peru?")


def test_callable_script_sees_the_messages() -> None:
    model = ScriptedModel(lambda messages: {"echo": messages[-1]["content"].upper()})
    assert json.loads(ask(model, "shout").text) == {"echo": "SHOUT"}


def test_exception_reply_is_raised_and_chained(transport: str) -> None:
    boom = RuntimeError("provider exploded")
    model = ScriptedModel([boom])
    with pytest.raises(ModelError, match="provider exploded") as caught:
        ask(model, transport=transport)
    assert caught.value.__cause__ is boom
    assert caught.value.retryable is False


def test_connection_error_reply_is_retried(transport: str) -> None:
    model = ScriptedModel([ConnectionResetError("reset by peer"), {"answer": "ok"}])
    assert ask(model, transport=transport).attempts == 2


def test_status_429_with_retry_after_is_retried_and_waits() -> None:
    model = ScriptedModel([ScriptedModel.status(429, retry_after=0.5), {"answer": "ok"}])
    started = time.perf_counter()
    reply = ask(model)
    assert reply.attempts == 2
    assert time.perf_counter() - started >= 0.45


@pytest.mark.parametrize("status", [500, 502, 503, 408])
def test_retryable_statuses(status: int, transport: str) -> None:
    model = ScriptedModel([status, {"answer": "ok"}])
    assert ask(model, transport=transport).attempts == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_non_retryable_statuses(status: int, transport: str) -> None:
    model = ScriptedModel([status, {"answer": "never reached"}])
    with pytest.raises(ModelError) as caught:
        ask(model, transport=transport)
    error = caught.value
    assert (error.status, error.retryable, error.attempts) == (status, False, 1)
    assert error.provider == "kaizen-scripted"
    assert len(model.calls) == 1
    if transport == "auto":  # in-process: the scripted HTTP error itself is chained
        assert isinstance(error.__cause__, ScriptedHTTPError)
        assert error.__cause__.status_code == status


def test_budget_exhaustion_reports_attempts(transport: str) -> None:
    model = ScriptedModel([500, 500, 500])
    with pytest.raises(ModelError) as caught:
        ask(model, retries=2, transport=transport)
    assert (caught.value.status, caught.value.retryable, caught.value.attempts) == (500, True, 3)


def test_calls_record_messages_response_format_and_parameters() -> None:
    model = ScriptedModel([{"answer": "x"}])
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Question?"},
    ]
    complete(messages, model=model, response_schema=SCHEMA, temperature=0.3, max_tokens=50)
    [call] = model.calls
    assert isinstance(call, ScriptedCall)
    assert call.messages == messages
    assert call.last_message == "Question?"
    assert call.response_format is not None
    assert call.response_format["json_schema"]["schema"] == SCHEMA
    assert call.params["temperature"] == 0.3
    assert call.params["max_tokens"] == 50
    assert call.params["timeout"] > 0


def test_scripted_models_always_get_the_schema() -> None:
    model = ScriptedModel([{"answer": "x"}, {"answer": "y"}])
    ask(model, response_schema=SCHEMA)
    ask(model, response_schema=SCHEMA, structured_output="instructions")
    first, second = model.calls
    assert first.response_format is not None
    assert second.response_format is None


def test_usage_is_deterministic_and_free(transport: str) -> None:
    first = ask(ScriptedModel(["same reply"]), "same prompt", transport=transport)
    second = ask(ScriptedModel(["same reply"]), "same prompt", transport=transport)
    in_process = ask(ScriptedModel(["same reply"]), "same prompt")
    assert first.usage == second.usage == in_process.usage
    assert first.usage.prompt_tokens > 0 and first.usage.completion_tokens > 0
    assert first.usage.cost == 0.0 and first.usage.calls == 1


def test_per_reply_finish_reason_and_latency(transport: str) -> None:
    model = ScriptedModel([ScriptedModel.reply('{"answer": "cut', finish_reason="length")])
    reply = ask(model, transport=transport)
    assert reply.finish_reason == "length"
    assert reply.text == '{"answer": "cut'


def test_latency_beyond_the_timeout_is_a_retryable_timeout(transport: str) -> None:
    model = ScriptedModel([ScriptedModel.reply("slow", latency=5), "fast"])
    reply = ask(model, timeout=0.2, transport=transport)
    assert reply.text == "fast"
    assert reply.attempts == 2


def test_sync_calls_from_many_threads_each_get_one_reply() -> None:
    model = ScriptedModel([{"n": i} for i in range(40)])
    seen: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            value = json.loads(ask(model).text)["n"]
            with lock:
                seen.append(value)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seen) == list(range(40))
    assert len(model.calls) == 40


def test_concurrent_async_calls_share_the_latency() -> None:
    model = ScriptedModel(lambda messages: {"echo": messages[-1]["content"]}, latency=0.3)
    received_when_answered: list[int] = []  # requests the model had seen as each reply came

    async def one(number: int) -> ModelReply:
        reply = await acomplete([{"role": "user", "content": str(number)}], model=model)
        received_when_answered.append(len(model.calls))
        return reply

    async def go() -> list[ModelReply]:
        return await asyncio.gather(*(one(i) for i in range(50)))

    replies = asyncio.run(go())
    assert [json.loads(r.text)["echo"] for r in replies] == [str(i) for i in range(50)]
    assert min(received_when_answered) == 50  # all 50 waited at once, not one after another


def test_async_errors_follow_the_same_rules() -> None:
    model = ScriptedModel([503, 401])

    async def go() -> ModelReply:
        return await acomplete([{"role": "user", "content": "x"}], model=model, backoff=0.01)

    with pytest.raises(ModelError) as caught:
        asyncio.run(go())
    assert (caught.value.status, caught.value.attempts) == (401, 2)


def test_bad_scripts_are_rejected_up_front() -> None:
    with pytest.raises(TypeError, match="wrap a single reply"):
        ScriptedModel("just text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ScriptedModel(42)  # type: ignore[arg-type]


def test_each_instance_has_its_own_name() -> None:
    first, second = ScriptedModel(["a"]), ScriptedModel(["b"])
    assert first.model_name != second.model_name
    assert str(first) == first.model_name
    assert (ask(second).text, ask(first).text) == ("b", "a")


def test_a_scripted_agent_runs_without_importing_litellm() -> None:
    code = textwrap.dedent(
        """
        import asyncio, sys
        import kaizen
        from kaizen.testing import ScriptedModel

        model = ScriptedModel({"": {"answer": "Paris"}})
        agent = kaizen.create_agent("qa", signature="question -> answer", config={"model": model})
        assert agent.execute(question="Capital of France?").answer == "Paris"
        assert asyncio.run(agent.execute_async(question="And again?")).answer == "Paris"
        assert [event for event in agent.stream_sync(question="Streamed?")]
        print("litellm" in sys.modules, len(model.calls))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "3"]


def test_streamed_replies_arrive_in_pieces_with_tool_calls_whole(transport: str) -> None:
    text = "a reply long enough to come in several pieces"
    model = ScriptedModel([ScriptedModel.tool_calls([("add", {"a": 1, "b": 2})], text=text)])
    pieces: list[str] = []
    request = prepare([{"role": "user", "content": "go"}], model=model, transport=transport)
    reply = run_sync(model_call(request, on_text=pieces.append))
    assert len(pieces) > 1 and "".join(pieces) == reply.text == text
    [call] = reply.tool_calls
    assert (call.name, json.loads(call.arguments)) == ("add", {"a": 1, "b": 2})
    assert reply.finish_reason == "tool_calls"
    assert reply.usage.completion_tokens > 0 and reply.usage.cost == 0.0
    assert model.calls[0].params["stream"] is True


def test_a_copy_answers_from_where_the_script_got_to() -> None:
    model = ScriptedModel(["one", "two", "three"])
    assert ask(model).text == "one"
    copy = pickle.loads(pickle.dumps(model))  # as a Ray worker receives it
    assert (copy.remaining, copy.calls) == (2, [])
    assert ask(copy).text == "two"
    assert len(copy.calls) == 1
