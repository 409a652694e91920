"""A2A on `kaizen serve` and `kaizen.a2a.RemoteAgent`, tested with `a2a-sdk`'s own client over
loopback (real uvicorn servers, a real store): the agent card, SendMessage (unary and
streaming), GetTask, CancelTask, SubscribeToTask, a run that waits for a person (input-required,
then answered on the same task), typed results as a data part; and RemoteAgent as a tool and as a
workflow node, against Kaizen's own server and against a small server written with a2a-sdk."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("a2a")
import httpx
from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import (
    add_a2a_routes_to_fastapi,
    create_agent_card_routes,
    create_jsonrpc_routes,
)
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    SubscribeToTaskRequest,
    Task,
    TaskState,
    TaskStatus,
)
from fastapi import FastAPI

import kaizen
from kaizen import LocalRuntime, WorkflowBuilder
from kaizen.a2a import RemoteAgent, RemoteAgentError
from kaizen.a2a.parts import data_part, part_value
from kaizen.testing import ScriptedModel
from tests.test_agui import failing


def qa_agent() -> Any:
    model = ScriptedModel(lambda messages: {"answer": "Paris", "confidence": 0.9})
    return kaizen.create_agent("qa", "question -> answer, confidence: float", {"model": model})


def ask(question: str) -> str:
    said = kaizen.interrupt({"question": question}, schema={"type": "string"})
    return f"{question} -> {said}"


def asking() -> Any:
    builder = WorkflowBuilder("asking")
    builder.add_node(ask, "ask")
    return builder.build()


GATE = threading.Event()


async def held(question: str) -> str:
    await asyncio.to_thread(GATE.wait, 60)
    return question


def slow() -> Any:
    builder = WorkflowBuilder("slow")
    builder.add_node(held, "held")
    return builder.build()


def pair(first: str, second: int) -> str:
    return first * second


def pairs() -> Any:
    builder = WorkflowBuilder("pairs")
    builder.add_node(pair, "pair")
    return builder.build()


def message(*parts: Part, task_id: str | None = None, context_id: str | None = None) -> Message:
    return Message(message_id=uuid.uuid4().hex, role=Role.ROLE_USER, parts=list(parts),
                   task_id=task_id or "", context_id=context_id or "")  # fmt: skip


async def send(url: str, sent: Message, *, streaming: bool = False, **config: Any) -> list[Any]:
    client = await create_client(url, client_config=ClientConfig(streaming=streaming))
    request = SendMessageRequest(message=sent, configuration=SendMessageConfiguration(**config))
    try:
        return [reply async for reply in client.send_message(request)]
    finally:
        await client.close()


def results_of(task: Task) -> Any:
    values = [part_value(p) for a in task.artifacts for p in a.parts]
    return next(v for v in values if isinstance(v, dict))


def test_the_agent_card_is_made_from_the_signature_and_resolved_by_the_sdk(serve: Any) -> None:
    url = serve(qa_agent())
    card = asyncio.run(_card(url))
    assert card.name == "qa"
    assert "question: str -> answer: str, confidence: float" in card.description
    (interface,) = card.supported_interfaces
    assert interface.url == f"{url}/a2a" and interface.protocol_binding == "JSONRPC"
    assert interface.protocol_version == "1.0" and card.capabilities.streaming
    assert [s.id for s in card.skills] == ["qa"] and "Inputs: question" in card.skills[
        0
    ].description


async def _card(url: str) -> AgentCard:
    async with httpx.AsyncClient() as http:
        return await A2ACardResolver(http, url).get_agent_card()


def test_send_message_unary_and_streaming_give_the_typed_results(serve: Any) -> None:
    url = serve(qa_agent())
    (reply,) = asyncio.run(send(url, message(Part(text="capital of France?"))))
    task = reply.task
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert results_of(task) == {"answer": "Paris", "confidence": 0.9}
    run_id = dict(task.metadata)["kaizen_run_id"]
    assert httpx.get(f"{url}/runs/{run_id}", timeout=30).json()["status"] == "completed"

    streamed = asyncio.run(send(url, message(Part(text="capital?")), streaming=True))
    kinds = [r.WhichOneof("payload") for r in streamed]
    assert kinds[0] == "task" and kinds[-1] == "status_update" and "artifact_update" in kinds
    states = [r.status_update.status.state for r in streamed if r.HasField("status_update")]
    assert states == [TaskState.TASK_STATE_WORKING, TaskState.TASK_STATE_COMPLETED]
    artifact = next(r.artifact_update.artifact for r in streamed if r.HasField("artifact_update"))
    assert part_value(artifact.parts[0]) == {"answer": "Paris", "confidence": 0.9}


def test_get_task_and_cancel_task(serve: Any) -> None:
    GATE.clear()
    url = serve(slow())

    async def go() -> tuple[Any, Any]:
        (first,) = await send(url, message(Part(text="wait")), return_immediately=True)
        client = await create_client(url, client_config=ClientConfig(streaming=True))
        try:
            got = await client.get_task(GetTaskRequest(id=first.task.id))
            cancelled = await client.cancel_task(CancelTaskRequest(id=first.task.id))
            return got, cancelled
        finally:
            await client.close()
            GATE.set()

    got, cancelled = asyncio.run(go())
    assert got.status.state in (TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING)
    assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
    run_id = dict(got.metadata)["kaizen_run_id"]
    assert asyncio.run(_until_status(url, run_id, {"cancelled"})) == "cancelled"


async def _until_status(url: str, run_id: str, wanted: set[str]) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for _ in range(3000):
            status = (await client.get(f"/runs/{run_id}")).json()["status"]
            if status in wanted:
                return str(status)
            await asyncio.sleep(0.01)
    return str(status)


def test_subscribe_follows_a_task_to_its_end(serve: Any) -> None:
    GATE.clear()
    url = serve(slow())

    async def go() -> list[Any]:
        (first,) = await send(url, message(Part(text="hello")), return_immediately=True)
        client = await create_client(url, client_config=ClientConfig(streaming=True))
        try:
            stream = client.subscribe(SubscribeToTaskRequest(id=first.task.id))
            seen = [await stream.__anext__()]
            GATE.set()  # the run may finish now that a subscriber follows it
            seen += [update async for update in stream]
            return seen
        finally:
            await client.close()

    seen = asyncio.run(go())
    last = seen[-1]
    assert last.HasField("status_update")
    assert last.status_update.status.state == TaskState.TASK_STATE_COMPLETED


def test_a_waiting_run_is_input_required_and_the_next_message_answers_it(serve: Any) -> None:
    url = serve(asking())
    (reply,) = asyncio.run(send(url, message(Part(text="ship it?"))))
    task = reply.task
    assert task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    asked = [part_value(p) for p in task.status.message.parts]
    interrupts = next(v for v in asked if isinstance(v, dict))["interrupts"]
    assert [i["id"] for i in interrupts] == ["ask/0"]
    answer = message(Part(text="yes"), task_id=task.id, context_id=task.context_id)
    (done,) = asyncio.run(send(url, answer))
    assert done.task.status.state == TaskState.TASK_STATE_COMPLETED
    assert results_of(done.task) == {"ask": {"result": "ship it? -> yes"}}


def test_structured_inputs_a_rejected_message_and_a_failed_run(serve: Any) -> None:
    url = serve(pairs())
    (reply,) = asyncio.run(send(url, message(data_part({"first": "ab", "second": 2}))))
    assert results_of(reply.task) == {"pair": {"result": "abab"}}
    (refused,) = asyncio.run(send(url, message(Part(text="just text"))))
    assert refused.task.status.state == TaskState.TASK_STATE_REJECTED
    said = " ".join(str(part_value(p)) for p in refused.task.status.message.parts)
    assert "data part" in said
    failed_url = serve(failing())
    (failed,) = asyncio.run(send(failed_url, message(Part(text="boom"))))
    assert failed.task.status.state == TaskState.TASK_STATE_FAILED
    said = " ".join(str(part_value(p)) for p in failed.task.status.message.parts)
    assert "cannot handle 'boom'" in said


# -- RemoteAgent ---------------------------------------------------------------------------------


class Echo(AgentExecutor):
    """A small agent written with a2a-sdk alone: it shouts what it is told."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.task_id and context.context_id
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        submitted = TaskStatus(state=TaskState.TASK_STATE_SUBMITTED)
        await event_queue.enqueue_event(
            Task(id=context.task_id, context_id=context.context_id, status=submitted)
        )
        text = context.get_user_input()
        if "fail" in text:
            await updater.failed(updater.new_agent_message([Part(text="I refuse to fail")]))
            return
        await updater.add_artifact([Part(text=text.upper())], name="shout")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.task_id and context.context_id
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()


def echo_server() -> tuple[FastAPI, AgentCard]:
    card = AgentCard(
        name="shouter", description="Shouts what it is told.", version="1",
        supported_interfaces=[AgentInterface(url="http://127.0.0.1/", protocol_binding="JSONRPC",
                                             protocol_version="1.0")],
        capabilities=AgentCapabilities(streaming=False), default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="shout", name="shout", description="upper-cases text", tags=["x"])],
    )  # fmt: skip
    handler = DefaultRequestHandler(agent_executor=Echo(), task_store=InMemoryTaskStore(),
                                    agent_card=card)  # fmt: skip
    app = FastAPI()
    add_a2a_routes_to_fastapi(
        app, agent_card_routes=create_agent_card_routes(card),
        jsonrpc_routes=create_jsonrpc_routes(handler, rpc_url="/"),
    )  # fmt: skip
    return app, card


def test_a_remote_agent_is_a_tool_of_a_kaizen_agent(serve: Any) -> None:
    url = serve(qa_agent())
    remote = RemoteAgent(url)
    (tool,) = remote.list_tools()
    assert tool.name == "qa" and "question: str -> answer: str" in tool.description
    assert tool.description.count("question: str") == 1 and "Inputs: question" in tool.description

    def reply(messages: list[dict[str, Any]]) -> Any:
        if not any(m.get("role") == "tool" for m in messages):
            return ScriptedModel.tool_call("qa", {"message": "capital of France?"})
        return {"answer": str(messages[-1]["content"])}  # what the tool answered

    model = ScriptedModel(reply)
    writer = kaizen.create_agent("writer", "task -> answer", {"model": model}, tools=[remote])
    result = writer.execute(task="ask the other team")
    assert result.success and '"answer": "Paris"' in result.answer
    assert '"confidence": 0.9' in result.answer


def test_a_remote_agent_is_a_node_of_a_workflow(serve: Any) -> None:
    url = serve(qa_agent())
    builder = WorkflowBuilder("asks_remote")
    builder.add_node(RemoteAgent(url).ask, "remote")
    results, _ = LocalRuntime().execute(builder.build(), {"remote": {"message": "capital?"}})
    assert results["remote"]["result"] == '{"answer": "Paris", "confidence": 0.9}'


def test_a_remote_agent_written_with_the_sdk_alone(serve: Any) -> None:
    app, card = echo_server()
    url = serve(app)
    card.supported_interfaces[0].url = url + "/"  # (where it listens is known now)
    remote = RemoteAgent(url, name="shout")
    assert asyncio.run(remote.ask("hello there")) == "HELLO THERE"
    with pytest.raises(RemoteAgentError, match="ended its task failed: I refuse to fail"):
        asyncio.run(remote.ask("please fail"))
    (tool,) = remote.list_tools()
    assert tool.name == "shout" and "Shouts what it is told." in tool.description


def test_an_unreachable_or_failing_remote_agent_is_a_clear_error(serve: Any) -> None:
    with pytest.raises(RemoteAgentError, match=r"no A2A agent card at http://127\.0\.0\.1:9/"):
        RemoteAgent("http://127.0.0.1:9").list_tools()
    url = serve(failing())
    with pytest.raises(RemoteAgentError, match="cannot handle 'boom'"):
        asyncio.run(RemoteAgent(url).ask("boom"))
    assert "s3cret" not in repr(RemoteAgent(url, headers={"Authorization": "Bearer s3cret"}))
