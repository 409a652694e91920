"""OpenTelemetry spans (GenAI conventions), the correlation id on log lines, and Prometheus
metrics (kaizen.observe.telemetry, kaizen.observe.metrics): real SDK exporters and registries."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("prometheus_client")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from prometheus_client import CollectorRegistry

import kaizen
from kaizen import LocalRuntime, WorkflowBuilder
from kaizen.errors import ModelError
from kaizen.llm.resilience import reset_resilience
from kaizen.testing import ScriptedModel

SECRET = "sk-proj-" + "a1B2" * 10


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture(autouse=True)
def fresh_breakers() -> Iterator[None]:
    reset_resilience()
    yield
    reset_resilience()


def by_name(spans: tuple[ReadableSpan, ...], prefix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


@kaizen.tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def test_a_workflow_of_agents_gives_nested_genai_spans_with_tokens_summed_once(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    first = ScriptedModel(lambda messages: {"draft": "d"})
    second = ScriptedModel(
        [ScriptedModel.tool_call("add", {"a": 1, "b": 2}), {"answer": "3"}],
    )
    writer = kaizen.create_agent("writer", "question -> draft", {"model": first})
    checker = kaizen.create_agent("checker", "draft -> answer", {"model": second}, tools=[add])
    wb = WorkflowBuilder("review")
    wb.add_agent(writer, "writer")
    wb.add_agent(checker, "checker")
    wb.add_connection("writer", "checker")
    runtime = LocalRuntime(hooks=[kaizen.TracingHook(provider)])
    _, record = runtime.execute_with_record(wb.build(), {"question": "q"})

    spans = exporter.get_finished_spans()
    [workflow] = by_name(spans, "invoke_workflow review")
    agents = {s.name: s for s in by_name(spans, "invoke_agent ")}
    assert set(agents) == {"invoke_agent writer", "invoke_agent checker"}
    chats = by_name(spans, "chat ")
    assert len(chats) == 3  # one for the writer, two turns for the checker
    [tool] = by_name(spans, "execute_tool add")

    def parent_of(span: ReadableSpan) -> int | None:
        return span.parent.span_id if span.parent else None

    assert workflow.parent is None
    assert all(parent_of(a) == workflow.context.span_id for a in agents.values())
    checker_id = agents["invoke_agent checker"].context.span_id
    assert parent_of(tool) == checker_id
    assert {s.context.trace_id for s in spans} == {workflow.context.trace_id}

    chat = chats[0]
    attributes = dict(chat.attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "kaizen-scripted"
    assert attributes["gen_ai.request.model"] == chat.name.removeprefix("chat ")
    assert attributes["gen_ai.usage.input_tokens"] > 0
    assert attributes["gen_ai.usage.output_tokens"] > 0
    assert list(attributes["gen_ai.response.finish_reasons"])
    assert "gen_ai.input.messages" not in attributes  # content only on opt-in
    assert dict(tool.attributes or {})["gen_ai.operation.name"] == "execute_tool"

    def tokens(span: ReadableSpan) -> tuple[int, int]:
        a = dict(span.attributes or {})
        return int(a["gen_ai.usage.input_tokens"]), int(a["gen_ai.usage.output_tokens"])

    chat_total = tuple(map(sum, zip(*(tokens(c) for c in chats), strict=True)))
    assert tokens(workflow) == chat_total  # each call counted once on the run
    agent_total = tuple(map(sum, zip(*(tokens(a) for a in agents.values()), strict=True)))
    assert agent_total == chat_total
    assert sum(chat_total) == record.usage.total_tokens


def test_content_is_recorded_only_on_opt_in_and_secrets_are_redacted(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    model = ScriptedModel(lambda messages: {"answer": "fine"})
    agent = kaizen.create_agent("qa", "question -> answer", {"model": model, "api_key": SECRET})
    agent.add_hook(kaizen.TracingHook(provider, capture_content=True))
    agent.execute(question=f"my key is {SECRET}, is that ok?")
    [chat] = by_name(exporter.get_finished_spans(), "chat ")
    attributes = dict(chat.attributes or {})
    assert "is that ok" in attributes["gen_ai.input.messages"]
    assert "fine" in attributes["gen_ai.output.messages"]
    for span in exporter.get_finished_spans():
        assert SECRET not in repr(dict(span.attributes or {}))


def test_a_failed_call_is_an_error_span_and_enable_tracing_covers_every_runtime(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    model = ScriptedModel(lambda messages: ConnectionError("down"))
    agent = kaizen.create_agent("down", "question -> answer", {"model": model, "retries": 0})
    disable = kaizen.enable_tracing(provider)
    try:
        with pytest.raises(ModelError):
            agent.execute(question="q")
    finally:
        disable()
    spans = exporter.get_finished_spans()
    [chat] = by_name(spans, "chat ")
    assert not chat.status.is_ok and dict(chat.attributes or {})["error.type"] == "ModelError"
    [invoked] = by_name(spans, "invoke_agent down")  # an agent run alone: no workflow span
    assert not invoked.status.is_ok and not by_name(spans, "invoke_workflow ")
    count = len(exporter.get_finished_spans())
    with pytest.raises(ModelError):
        agent.execute(question="q")
    assert len(exporter.get_finished_spans()) == count  # disabled: no more spans


def test_every_log_line_inside_a_run_carries_the_run_id(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("kaizen.test.correlation")

    def work(text: str) -> str:
        log.warning("working on %s", text)
        return text

    wb = WorkflowBuilder()
    wb.add_node(work, "work")
    caplog.handler.addFilter(kaizen.CorrelationFilter())
    with caplog.at_level(logging.WARNING, logger="kaizen.test.correlation"):
        _, run_id = LocalRuntime().execute(wb.build(), {"text": "x"})
        log.warning("outside any run")
    inside, outside = caplog.records
    assert inside.correlation_id == run_id and inside.node_id == "work"  # type: ignore[attr-defined]
    assert outside.correlation_id == "-"  # type: ignore[attr-defined]


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_metrics_count_calls_tokens_errors_durations_and_breaker_state() -> None:
    registry = CollectorRegistry()
    metrics = kaizen.MetricsHook(registry)
    try:
        good = ScriptedModel(lambda messages: {"answer": "a"})
        agent = kaizen.create_agent("qa", "question -> answer", {"model": good})
        for _ in range(3):
            agent.execute(question="q")  # not observed: the hook is on one runtime only
        wb = WorkflowBuilder()
        wb.add_agent(agent, "qa")
        LocalRuntime(hooks=[metrics]).execute(wb.build(), {"question": "q"})
        name = good.model_name
        assert sample(registry, "kaizen_model_calls_total", model=name, outcome="ok") == 1
        assert sample(registry, "kaizen_tokens_total", model=name, kind="input") > 0
        assert sample(registry, "kaizen_runs_total", status="completed") == 1
        assert sample(registry, "kaizen_node_duration_seconds_count",
                      node_type="AgentNode", status="completed") == 1  # fmt: skip

        bad_name = f"m-{uuid.uuid4().hex[:6]}"
        bad = ScriptedModel(lambda messages: 500, name=bad_name)
        failing = kaizen.create_agent("down", "question -> answer", {
            "model": bad, "retries": 0, "circuit_breaker": {"failure_threshold": 2},
        })  # fmt: skip
        failing.add_hook(metrics)
        for _ in range(3):
            with pytest.raises(ModelError):
                failing.execute(question="q")
        model = bad.model_name
        assert sample(registry, "kaizen_model_calls_total", model=model, outcome="error") == 3
        errors = sample(registry, "kaizen_model_errors_total", model=model, error="ModelError")
        opened = sample(registry, "kaizen_model_errors_total", model=model,
                        error="CircuitOpenError")  # fmt: skip
        assert (errors, opened) == (2, 1)
        assert sample(registry, "kaizen_breaker_state", model=model) == 2  # open
        assert sample(registry, "kaizen_breaker_transitions_total", model=model,
                      state="open") == 1  # fmt: skip
        assert sample(registry, "kaizen_model_call_duration_seconds_count", model=model) == 3
        label_names = {
            key for family in registry.collect() for s in family.samples for key in s.labels
        }
        assert label_names <= {"status", "node_type", "model", "outcome", "error", "kind",
                               "tool", "state", "le"}  # fmt: skip
    finally:
        metrics.close()


def test_a_second_metrics_hook_on_one_registry_shares_its_collectors() -> None:
    registry = CollectorRegistry()
    first = kaizen.MetricsHook(registry)
    second = kaizen.MetricsHook(registry)  # a re-run notebook cell, one hook per runtime
    try:
        model = ScriptedModel(lambda messages: {"answer": "a"})
        agent = kaizen.create_agent("qa", "question -> answer", {"model": model})
        wb = WorkflowBuilder()
        wb.add_agent(agent, "qa")
        LocalRuntime(hooks=[first]).execute(wb.build(), {"question": "q"})
        LocalRuntime(hooks=[second]).execute(wb.build(), {"question": "q"})
        assert sample(registry, "kaizen_runs_total", status="completed") == 2
        name = model.model_name
        assert sample(registry, "kaizen_model_calls_total", model=name, outcome="ok") == 2
        bad = ScriptedModel(lambda messages: 500, name=f"m-{uuid.uuid4().hex[:6]}")
        failing = kaizen.create_agent("down", "question -> answer", {
            "model": bad, "retries": 0, "circuit_breaker": {"failure_threshold": 1},
        })  # fmt: skip
        with pytest.raises(ModelError):
            failing.execute(question="q")
        transitions = sample(registry, "kaizen_breaker_transitions_total",
                             model=bad.model_name, state="open")  # fmt: skip
        assert transitions == 1  # one transition, counted once for both hooks
        other = CollectorRegistry()
        kaizen.MetricsHook(other, namespace="app").close()  # another namespace: its own
        assert other.get_sample_value("app_runs_total", {"status": "completed"}) is None
        with pytest.raises(ValueError, match="kaizen_runs_total"):
            from prometheus_client import Gauge

            clash = CollectorRegistry()
            Gauge("kaizen_runs_total", "not ours", registry=clash)
            kaizen.MetricsHook(clash)
    finally:
        first.close()
        second.close()


# -- the GenAI semantic conventions, as the installed registry names them ------------------------

semconv = pytest.importorskip("opentelemetry.semconv._incubating.attributes.gen_ai_attributes")
from opentelemetry.semconv.attributes import error_attributes, server_attributes  # noqa: E402
from opentelemetry.trace import SpanKind  # noqa: E402

REGISTERED = {
    value
    for module in (semconv, server_attributes, error_attributes)
    for name, value in vars(module).items()
    if name.isupper() and isinstance(value, str)
}


def attributes_of(span: ReadableSpan) -> dict[str, object]:
    return dict(span.attributes or {})


def test_spans_carry_the_attributes_the_conventions_require_and_know(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    model = ScriptedModel(
        [ScriptedModel.tool_call("add", {"a": 1, "b": 2}), {"answer": "3"}],
    )
    config = {"model": model, "temperature": 0.3, "max_tokens": 200,
              "api_base": "http://models.internal:8080/v1"}  # fmt: skip
    checker = kaizen.create_agent("checker", "question -> answer", config, tools=[add])
    wb = WorkflowBuilder("review")
    wb.add_agent(checker, "check_step")  # the node id is not the agent's name
    LocalRuntime(hooks=[kaizen.TracingHook(provider)]).execute(wb.build(), {"question": "q"})

    spans = exporter.get_finished_spans()
    [workflow] = by_name(spans, "invoke_workflow ")
    assert attributes_of(workflow)[semconv.GEN_AI_WORKFLOW_NAME] == "review"
    [agent] = by_name(spans, "invoke_agent ")
    assert agent.name == "invoke_agent checker"
    facts = attributes_of(agent)
    assert facts[semconv.GEN_AI_OPERATION_NAME] == "invoke_agent"
    assert facts[semconv.GEN_AI_AGENT_NAME] == "checker"
    assert facts[semconv.GEN_AI_PROVIDER_NAME] == "kaizen-scripted"
    assert facts[semconv.GEN_AI_REQUEST_MODEL] == model.model_name.partition("/")[2]
    chats = by_name(spans, "chat ")
    assert len(chats) == 2
    for chat in chats:
        assert chat.kind == SpanKind.CLIENT  # a call to a model server
        facts = attributes_of(chat)
        assert facts[semconv.GEN_AI_REQUEST_TEMPERATURE] == 0.3
        assert facts[semconv.GEN_AI_REQUEST_MAX_TOKENS] == 200
        assert str(facts[semconv.GEN_AI_RESPONSE_ID])
        assert facts[server_attributes.SERVER_ADDRESS] == "models.internal"
        assert facts[server_attributes.SERVER_PORT] == 8080
    assert agent.kind == workflow.kind == SpanKind.INTERNAL
    operations = {value.value for value in semconv.GenAiOperationNameValues}
    for span in spans:
        facts = attributes_of(span)
        unknown = {k for k in facts if k.startswith(("gen_ai.", "server.")) and k not in REGISTERED}
        assert not unknown, f"{span.name}: not in the conventions' registry: {unknown}"
        if semconv.GEN_AI_OPERATION_NAME in facts:
            assert facts[semconv.GEN_AI_OPERATION_NAME] in operations


@pytest.mark.parametrize("registered", ["for the process", "on the agent"])
def test_an_agent_run_alone_is_one_invoke_agent_span(
    exporter: InMemorySpanExporter, provider: TracerProvider, registered: str
) -> None:
    model = ScriptedModel(lambda messages: {"answer": "fine"})
    agent = kaizen.create_agent("qa", "question -> answer", {"model": model})
    if registered == "on the agent":  # an agent's hooks see its node, not the run
        agent.add_hook(kaizen.TracingHook(provider))
        agent.execute(question="q")
    else:
        disable = kaizen.enable_tracing(provider)
        try:
            agent.execute(question="q")
        finally:
            disable()
    spans = exporter.get_finished_spans()
    assert not by_name(spans, "invoke_workflow")
    [invoked] = by_name(spans, "invoke_agent ")
    [chat] = by_name(spans, "chat ")
    assert invoked.name == "invoke_agent qa" and invoked.parent is None
    assert chat.parent is not None and chat.parent.span_id == invoked.context.span_id
    facts = attributes_of(invoked)
    assert facts[semconv.GEN_AI_USAGE_INPUT_TOKENS] > 0
    assert facts[semconv.GEN_AI_AGENT_NAME] == "qa"
    assert facts[semconv.GEN_AI_PROVIDER_NAME] == "kaizen-scripted"


def test_content_is_recorded_as_the_conventions_messages_tool_calls_included(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    import json

    model = ScriptedModel([ScriptedModel.tool_call("add", {"a": 1, "b": 2}), {"answer": "3"}])
    agent = kaizen.create_agent("adder", "question -> answer", {"model": model}, tools=[add])
    agent.add_hook(kaizen.TracingHook(provider, capture_content=True))
    agent.execute(question="What is 1 + 2?")
    first, second = by_name(exporter.get_finished_spans(), "chat ")

    asked = json.loads(str(attributes_of(first)[semconv.GEN_AI_INPUT_MESSAGES]))
    assert all(set(m) == {"role", "parts"} for m in asked)
    user = [m for m in asked if m["role"] == "user"][-1]
    assert any("What is 1 + 2?" in p.get("content", "") for p in user["parts"])
    [calling] = json.loads(str(attributes_of(first)[semconv.GEN_AI_OUTPUT_MESSAGES]))
    assert calling["role"] == "assistant" and calling["finish_reason"] == "tool_call"
    [call] = [p for p in calling["parts"] if p["type"] == "tool_call"]
    assert call["name"] == "add" and call["arguments"] == {"a": 1, "b": 2} and call["id"]

    history = json.loads(str(attributes_of(second)[semconv.GEN_AI_INPUT_MESSAGES]))
    [answered] = [m for m in history if m["role"] == "tool"]
    [response] = answered["parts"]
    assert response == {"type": "tool_call_response", "id": call["id"], "response": "3"}
    [asked_again] = [m for m in history if m["role"] == "assistant"]
    assert [p["name"] for p in asked_again["parts"] if p["type"] == "tool_call"] == ["add"]
    [final] = json.loads(str(attributes_of(second)[semconv.GEN_AI_OUTPUT_MESSAGES]))
    assert final["finish_reason"] in {"stop", "tool_call"} and final["parts"]


def test_litellm_provider_prefixes_become_the_conventions_provider_names() -> None:
    from kaizen.observe.telemetry import provider_and_model

    known = {value.value for value in semconv.GenAiProviderNameValues}
    for model, provider in [("gemini/gemini-2.0-flash", "gcp.gemini"),
                            ("bedrock/anthropic.claude-3", "aws.bedrock"),
                            ("openai/gpt-4o-mini", "openai"),
                            ("mistral/mistral-large", "mistral_ai")]:  # fmt: skip
        assert provider_and_model(model)[0] == provider and provider in known
