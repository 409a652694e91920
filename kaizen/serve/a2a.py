"""A2A on `kaizen serve`: the served agent or workflow as an A2A 1.0 agent, on ``a2a-sdk``.

`mount_a2a(app, served, manager)` adds, beside the native API:

    GET  /.well-known/agent-card.json     the agent card: name, description, one skill made
                                          from the target's signature and docstring, its URL
                                          taken from the request (whatever host serves it)
    POST /a2a                             JSON-RPC: SendMessage, SendStreamingMessage, GetTask,
                                          CancelTask, SubscribeToTask (the SDK's routes)

A Kaizen run is an A2A task (`KaizenExecutor`): the message's data part (an object) gives the
inputs, else its text fills a target with one input; the run's statuses map to the task's
(queued and running: working; waiting: input-required; completed; failed; cancelled: canceled).
A run that waits for a person asks through the task's status message (its interrupts as a data
part); the next message on the task answers them (a data part ``{"answers": {id: answer}}``,
or, for a single open interrupt, the message's text or data itself) and the run goes on. The
results come back as an artifact: the typed outputs as a data part, and as JSON text.

The SDK's task store is in memory (this process); the run itself is a served run like any
other (in the store, at ``/runs/{id}``, in the run browser). Extra ``a2a``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes import create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Message,
    Part,
    Task,
    TaskState,
    TaskStatus,
)
from fastapi import Request
from fastapi.responses import JSONResponse
from google.protobuf import json_format

from kaizen.a2a.parts import data_part, part_value

if TYPE_CHECKING:
    from fastapi import FastAPI

    from kaizen.serve.runs import RunManager, ServedRun
    from kaizen.serve.target import ServedTarget

__all__ = ["RPC_PATH", "KaizenExecutor", "agent_card", "describe", "mount_a2a"]

RPC_PATH = "/a2a"
CARD_PATH = "/.well-known/agent-card.json"
PROTOCOL_VERSION = "1.0"
_RUN_KEY = "kaizen_run_id"  # in the task's metadata: the served run it is


def describe(served: ServedTarget) -> str:
    """What the target does, from its signature and instructions (an agent) or its inputs and
    outputs (a workflow)."""
    if served.agent is not None:
        signature = served.agent.signature
        said = f"{served.name}: {signature}."
        return f"{said} {signature.instructions}".strip() if signature.instructions else said
    inputs = ", ".join(served.request_schema.get("properties") or {}) or "no inputs"
    outputs = ", ".join(served.results_schema.get("properties") or {}) or "its nodes' outputs"
    return f"The Kaizen workflow {served.name!r}: {inputs} -> {outputs}."


def agent_card(served: ServedTarget, base_url: str) -> AgentCard:
    """The card of `served`, answered at `base_url`."""
    described = describe(served)
    inputs = ", ".join(served.request_schema.get("properties") or {}) or "none"
    skill = AgentSkill(
        id=served.name,
        name=served.name,
        description=f"{described} Inputs: {inputs} (a data part, or text for one input).",
        tags=["kaizen", served.kind],
        examples=[],
        input_modes=["text/plain", "application/json"],
        output_modes=["application/json", "text/plain"],
    )
    return AgentCard(
        name=served.name,
        description=described,
        version="1",
        supported_interfaces=[
            AgentInterface(
                url=base_url.rstrip("/") + RPC_PATH,
                protocol_binding="JSONRPC",
                protocol_version=PROTOCOL_VERSION,
            )
        ],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=["application/json", "text/plain"],
        skills=[skill],
    )


class KaizenExecutor(AgentExecutor):
    """Runs a served target for the A2A request handler (see the module docstring)."""

    def __init__(self, served: ServedTarget, manager: RunManager, keepalive: float) -> None:
        self.served = served
        self.manager = manager
        self.keepalive = keepalive

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        from kaizen.errors import KaizenError
        from kaizen.serve.target import RequestProblems

        assert context.task_id is not None and context.context_id is not None
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        task = context.current_task
        try:
            if task is not None and task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED:
                run, after = await self._resume(task, context)
            else:
                run, after = await self._start(context, event_queue)
        except RequestProblems as problems:
            text = "; ".join(f"{field}: {why}" for field, why in problems.problems)
            await self._ensure_task(context, event_queue, None)
            await updater.reject(self._say(updater, f"the inputs do not fit: {text}"))
            return
        except KaizenError as exc:  # an answer that does not fit, a run that waits no more
            await self._ensure_task(context, event_queue, None)
            await updater.failed(self._say(updater, str(exc)))
            return
        await updater.start_work()
        await self._follow(run, after, updater)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.task_id is not None and context.context_id is not None
        task = context.current_task
        run_id = _run_of(task) if task is not None else None
        if run_id is not None:
            live = self.manager.live(run_id)
            if live is not None and live.status != "waiting" and not live.is_finished:
                self.manager.cancel(run_id)
            elif task is not None and task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED:
                await self.manager.cancel_waiting(run_id)
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        await updater.cancel(self._say(updater, "cancelled"))

    # -- the parts ---------------------------------------------------------------------------------

    async def _start(self, context: RequestContext, queue: EventQueue) -> tuple[ServedRun, int]:
        inputs = self._inputs(context.message)
        parameters = self.served.check(inputs)
        run = self.manager.submit(inputs, parameters)
        await self.manager.committed()
        await self._ensure_task(context, queue, run.run_id)
        return run, 0

    async def _resume(self, task: Task, context: RequestContext) -> tuple[ServedRun, int]:
        from kaizen.errors import RunNotFoundError
        from kaizen.store.served import load_served_events

        run_id = _run_of(task)
        if run_id is None:
            raise RunNotFoundError(f"task {task.id} is not a Kaizen run", path=None)
        events = load_served_events(self.manager.store, run_id, 0)
        open_ids = [i["id"] for i in _asked(task) if not i.get("answered")]
        said = [part_value(p) for p in (context.message.parts if context.message else ())]
        said = [value for value in said if value is not None]
        answers: dict[str, Any]
        if said and isinstance(said[0], dict) and isinstance(said[0].get("answers"), dict):
            answers = dict(said[0]["answers"])
        elif len(open_ids) == 1 and said:
            answers = {open_ids[0]: said[0]}
        else:
            answers = {}
        run = await self.manager.resume(run_id, answers, None)
        return run, events[-1].seq if events else 0

    async def _ensure_task(
        self, context: RequestContext, queue: EventQueue, run: str | None
    ) -> None:
        if context.current_task is not None:
            return
        assert context.task_id is not None and context.context_id is not None
        task = Task(
            id=context.task_id,
            context_id=context.context_id,
            status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
            metadata={_RUN_KEY: run} if run is not None else None,
            history=[context.message] if context.message is not None else None,
        )
        await queue.enqueue_event(task)

    def _inputs(self, message: Message | None) -> dict[str, Any]:
        from kaizen.serve.target import RequestProblems

        values = [part_value(p) for p in (message.parts if message is not None else ())]
        for value in values:
            if isinstance(value, dict):
                return value
        texts = [v for v in values if isinstance(v, str)]
        schema = self.served.request_schema
        names = list((schema.get("properties") or {}).keys())
        required = list(schema.get("required") or ())
        wanted = required if len(required) == 1 else names if len(names) == 1 else []
        if texts and len(wanted) == 1:
            return {wanted[0]: "\n".join(texts)}
        raise RequestProblems([(
            "message",
            f"give the inputs ({', '.join(names) or 'none'}) as a data part (an object); text "
            "alone fills a target with one input",
        )])  # fmt: skip

    async def _follow(self, run: ServedRun, after: int, updater: TaskUpdater) -> None:
        from kaizen.serve.sse import live_events

        asked: list[dict[str, Any]] = []
        async for event in live_events(run, after, self.keepalive, self.manager.committed):
            if event is not None and event[1] == "interrupt":
                asked += list(json.loads(event[2]).get("interrupts") or ())
        if run.status == "waiting":
            open_asks = [i for i in asked if not i.get("answered")]
            text = "; ".join(f"{i['id']}: {json.dumps(i.get('payload'), default=str)}"
                             for i in open_asks)  # fmt: skip
            message = updater.new_agent_message(
                [Part(text=f"waiting for an answer: {text}"), data_part({"interrupts": open_asks})]
            )
            await updater.requires_input(message)
        elif run.status == "completed":
            results = run.results
            await updater.add_artifact(
                [data_part(results), Part(text=json.dumps(results, default=str))], name="results"
            )
            await updater.complete()
        elif run.status == "cancelled":
            await updater.cancel(self._say(updater, run.error or "cancelled"))
        else:
            await updater.failed(self._say(updater, run.error or f"the run ended {run.status}"))

    @staticmethod
    def _say(updater: TaskUpdater, text: str) -> Message:
        return updater.new_agent_message([Part(text=text)])


def _run_of(task: Task) -> str | None:
    value = json_format.MessageToDict(task.metadata).get(_RUN_KEY) if task.metadata else None
    return str(value) if value else None


def _asked(task: Task) -> list[dict[str, Any]]:
    """The interrupts the task's input-required status asked."""
    for part in task.status.message.parts:
        value = part_value(part)
        if isinstance(value, dict) and isinstance(value.get("interrupts"), list):
            return list(value["interrupts"])
    return []


def mount_a2a(app: FastAPI, served: ServedTarget, manager: RunManager, keepalive: float) -> None:
    """Add the agent card and the JSON-RPC endpoint to `app` (see the module docstring)."""
    executor = KaizenExecutor(served, manager, keepalive)
    handler = DefaultRequestHandler(
        agent_executor=executor,
        task_store=InMemoryTaskStore(),
        agent_card=agent_card(served, "http://localhost"),
    )
    app.router.routes.extend(create_jsonrpc_routes(handler, rpc_url=RPC_PATH))

    async def card(request: Request) -> JSONResponse:
        return JSONResponse(agent_card_to_dict(agent_card(served, str(request.base_url))))

    app.add_api_route(CARD_PATH, card, methods=["GET"], include_in_schema=False)
