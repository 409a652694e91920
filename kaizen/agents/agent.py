"""`Agent`: a signature + a model config, executable and usable as a workflow node
(`kaizen.agents.node.AgentNode`).

`agent.execute(**inputs)` is the workflow engine running a one-node workflow that holds the
agent's `AgentNode` (built once and cached); the conversation with the model is the exchange flow
of `kaizen.agents.exchange`, which the node drives sync (`run`) or async (`arun`).

When `execute` raises, and when it returns a failed result:

- before anything runs it always raises: `InputValidationError` (inputs that do not fit the
  signature), `ConfigError` (no model, a bad environment variable);
- when the run fails (`ModelError` after the provider retries, `OutputParseError` after
  `max_parse_attempts` replies that do not fit, `BudgetExceededError`) it raises that error by
  default; with the agent config `raise_on_error=False` it returns an `ExecutionResult` with
  `success=False` and the error in `.error` instead, metadata included;
- an agent with tools that hits a limit of its loop (`max_iterations`, a detected loop, its
  tools' retries, the budget) returns what was done: a failed result whose `stop_reason` says
  why and whose `tool_calls` hold every call made (`AgentLimitError` in `.error`); with the
  config `on_limit="raise"` it raises that `AgentLimitError`.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from kaizen.agents.config import (
    AgentConfig,
    ModelSettings,
    environment_key,
    resolve_settings,
    valid_keys,
)
from kaizen.agents.outcome import completed, failed
from kaizen.agents.result import ExecutionReport, ExecutionResult
from kaizen.aio import run_blocking
from kaizen.errors import (
    BudgetExceededError,
    ConfigError,
    NodeExecutionError,
)
from kaizen.flow import Call, Flow, run_async, run_sync
from kaizen.nodes.base import ExecutionPolicy
from kaizen.runtime.budget import Budget
from kaizen.runtime.hooks import Middleware, check_hooks
from kaizen.runtime.stream import Done, StreamEvent, StreamHook, stream_async, stream_sync
from kaizen.tools.toolset import ToolLike, Toolset, collect_tools

if TYPE_CHECKING:
    from datetime import timedelta
    from pathlib import Path

    from kaizen.agents.node import AgentNode
    from kaizen.observe.audit import AuditLog
    from kaizen.observe.monitor import ExecutionMonitor
    from kaizen.observe.optimizer import ExecutionOptimizer
    from kaizen.runtime.local import LocalRuntime
    from kaizen.signatures import Signature
    from kaizen.store.db import Store, StorePath
    from kaizen.store.memory import Memory, MemoryProvider
    from kaizen.tools.tool import Tool
    from kaizen.workflow.builder import WorkflowBuilder
    from kaizen.workflow.workflow import Workflow

__all__ = [
    "AGENT_CONFIG_KEYS",
    "DEFAULT_SIGNATURE_SPEC",
    "Agent",
    "coerce_signature",
    "default_signature",
]

# An agent created without a signature: a task, optional context, a free-text result.
DEFAULT_SIGNATURE_SPEC = "task: str, context: dict = {} -> result: str"

# one-node workflows an agent keeps for execute(): one per sync/async and signature (an agent
# without a signature has one per set of input names it was called with)
_MAX_ENGINES = 64
_H = TypeVar("_H")
# (agent, its settings) while one of its executions runs: resolved once per execution
_settled: ContextVar[tuple[Agent, ModelSettings] | None] = ContextVar("kaizen_settled")

#: The agent config keys (`AgentConfig`'s fields), which an agent node's config may hold.
AGENT_CONFIG_KEYS = frozenset(valid_keys())


def default_signature() -> Signature:
    """`task: str, context: dict = {} -> result: str` (created once, then cached)."""
    from kaizen.signatures import create_signature

    return create_signature(DEFAULT_SIGNATURE_SPEC)


def coerce_signature(signature: Any) -> Signature:
    """A `Signature` from a spec string, a `Signature` (instance or class form), or None."""
    from kaizen.signatures import Signature, create_signature

    if signature is None:
        return default_signature()
    if isinstance(signature, Signature):
        return signature
    return create_signature(signature)


class Agent:
    """A named agent: a `Signature`, an `AgentConfig`, lifecycle hooks, and a lazily resolved
    model. Create agents with `kaizen.create_agent(...)` or `Kaizen(...).create_agent(...)`.

    `hooks` (`kaizen.runtime.hooks`) observe this agent's own moments wherever it runs: its
    node's start and finish, its model calls and their usage, its tool calls.

    `tools` (functions, `kaizen.Tool`s, toolsets such as an MCP server) make it an agent that
    acts: it runs the reason-act loop (`kaizen.agents.loop`) until it calls `complete`.
    """

    def __init__(
        self,
        name: str,
        signature: Any = None,
        config: AgentConfig | Mapping[str, Any] | None = None,
        *,
        defaults: AgentConfig | None = None,
        hooks: Iterable[object] = (),
        tools: Iterable[ToolLike] = (),
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"an agent needs a non-empty name, got {name!r}")
        self.name = name
        own = AgentConfig.coerce(config, where=f"agent {name!r}")
        self.config: AgentConfig = own.merged_over(defaults) if defaults is not None else own
        # created without a signature: any keyword inputs, any output fields (agents.freeform)
        self.free_form = signature is None
        sig = coerce_signature(signature)
        instructions = self.config.effective_instructions
        if instructions is not None:
            sig = sig.with_instructions(instructions)
        self.signature: Signature = sig
        self._hooks = check_hooks(hooks)
        self._tool_sources: tuple[ToolLike, ...] = tuple(tools)
        collect_tools(self._tool_sources)  # bad tools and clashing names fail here, not in a run
        self._memory_options: dict[str, Any] | None = None
        self._reset()

    def _reset(self) -> None:
        """Caches: per-process state that never travels with the agent."""
        self._output_schema: dict[str, Any] | None = None
        self._settings: tuple[tuple[str | None, ...], ModelSettings] | None = None
        # execute() and execute_async() each get a cached one-node workflow (keyed by "sync"):
        # the sync one runs AgentNode.run inline, so a sync caller never crosses into a loop
        self._engines: dict[tuple[bool, Signature], Workflow] = {}
        self._runtime: LocalRuntime | None = None
        self._fixed_tools: list[Tool] | None = None
        self._memory: Memory | None = None  # made from _memory_options on first use
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # what defines the agent travels (to another process, a Ray worker); caches do not
        return {
            "name": self.name,
            "config": self.config,
            "signature": self.signature,
            "free_form": self.free_form,
            "hooks": self._hooks,
            "tools": self._tool_sources,
            "memory": self._memory_options,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.name = state["name"]
        self.config = state["config"]
        self.signature = state["signature"]
        self.free_form = state.get("free_form", False)
        self._hooks = state["hooks"]
        self._tool_sources = state.get("tools", ())
        self._memory_options = state.get("memory")
        self._reset()

    def __repr__(self) -> str:
        model = self.config.model
        return f"Agent({self.name!r}, inputs={list(self.signature.input_names)}, " + (
            f"outputs={list(self.signature.output_names)}, model={model!r})"
        )

    @property
    def hooks(self) -> tuple[object, ...]:
        return self._hooks

    def add_hook(self, hook: object) -> None:
        """Observe (or steer) this agent's moments with `hook` from now on: any lifecycle hook
        or middleware, and layer 4's (`kaizen.observe`): an `ExecutionMonitor`, an
        `ExecutionOptimizer`, an `AuditLog`, an `AccessPolicy`."""
        self._hooks = (*self._hooks, *check_hooks([hook]))

    def _hook_or_new(self, kind: type[_H], make: Callable[[], _H]) -> _H:
        """The first of this agent's hooks that is a `kind`, else `make()`, added as a hook."""
        found = next((hook for hook in self._hooks if isinstance(hook, kind)), None)
        if found is None:
            self.add_hook(found := make())
        return found

    def add_middleware(self, middleware: object) -> None:
        """Steer this agent's node and its model calls with `middleware` (a `kaizen.Middleware`)
        from the next run on; see kaizen.runtime.middleware."""
        self.add_hook(_middleware(middleware))

    @property
    def tools(self) -> list[Tool]:
        """The tools this agent offers its model (toolsets expanded as of now)."""
        return collect_tools(self._tool_sources)

    def add_tool(self, tool: ToolLike) -> None:
        """Offer `tool` (a function, a `kaizen.Tool` or a toolset) from the next run on."""
        sources = (*self._tool_sources, tool)
        collect_tools(sources)
        self._tool_sources = sources
        self._fixed_tools = None

    @property
    def has_tools(self) -> bool:
        """Whether this agent acts with tools (a toolset counts, even one now empty)."""
        return bool(self._tool_sources)

    def tools_for_run(self) -> list[Tool]:
        """The tools for one run: fixed tools are collected once, toolsets on every run."""
        fixed = self._fixed_tools
        if fixed is not None:
            return fixed
        tools = collect_tools(self._tool_sources)
        if not any(isinstance(source, Toolset) for source in self._tool_sources):
            self._fixed_tools = tools
        return tools

    # -- memory ---------------------------------------------------------------------------------

    def enable_memory(
        self,
        provider: MemoryProvider = "sqlite",
        path: StorePath | None = None,
        session: str | None = None,
        max_history: int = 1000,
        ttl: float | timedelta | None = None,
        *,
        embedding_model: str | None = None,
        k: int = 5,
    ) -> Memory:
        """Remember this agent's executions: each one is recorded, and the `k` most relevant
        earlier ones go into the prompt (a block appended to the system message). `provider`:
        ``"sqlite"`` (FTS5 BM25 + recency, in the store at `path`, persisting across
        processes), ``"memory"`` (this process only) or ``"vector_db"`` (adds embeddings:
        wordllama offline, extra ``vector``, or `embedding_model`, a litellm embedding model).
        Memories are kept per agent name and `session`; at most `max_history`, none older than
        `ttl` seconds. Returns the `Memory` (also `agent.memory`). See docs/state.md."""
        from kaizen.store.memory import Memory

        self._memory_options = {
            "provider": provider, "path": path, "session": session, "max_history": max_history,
            "ttl": ttl, "embedding_model": embedding_model, "k": k,
        }  # fmt: skip
        self._memory = Memory(self.name, **self._memory_options)
        return self._memory

    @property
    def memory(self) -> Memory | None:
        """The agent's `Memory` (`add`, `search`, `clear`), or None until `enable_memory`."""
        if self._memory is None and self._memory_options is not None:
            from kaizen.store.memory import Memory

            with self._lock:
                if self._memory is None:
                    self._memory = Memory(self.name, **self._memory_options)
        return self._memory

    # -- layer 4: monitor, optimizer, audit, access policy (kaizen.observe) ---------------------

    def configure(self, **keys: Any) -> None:
        """Change config keys from the next run on (validated like the agent's config)."""
        update = AgentConfig.coerce(keys, where=f"agent {self.name!r}")
        self.config = update.merged_over(self.config)
        self._settings = None

    def get_execution_monitor(self) -> ExecutionMonitor:
        """This agent's `ExecutionMonitor` (made and added as a hook on first call): summary,
        alerts (docs/production.md)."""
        from kaizen.observe.monitor import ExecutionMonitor

        return self._hook_or_new(ExecutionMonitor, lambda: ExecutionMonitor(self.name))

    def get_execution_optimizer(self) -> ExecutionOptimizer:
        """This agent's `ExecutionOptimizer` (made and added as a hook on first call):
        suggestions with evidence, auto-optimization."""
        from kaizen.observe.optimizer import ExecutionOptimizer

        return self._hook_or_new(ExecutionOptimizer, lambda: ExecutionOptimizer(self))

    def enable_audit_logging(self, path: str | Path | None = None) -> AuditLog:
        """Append this agent's executions, model and tool calls and access decisions to a
        hash-chained audit file (`path`, default ``$KAIZEN_HOME/audit.jsonl``); returns the
        `AuditLog` (a hook; the one the agent has if it has one). Check it with
        ``kaizen audit verify PATH``."""
        from kaizen.observe.audit import AuditLog

        return self._hook_or_new(AuditLog, lambda: AuditLog(self.name, path))

    def set_access_policy(self, policy: Any, *, store: StorePath | Store | None = None) -> None:
        """Check `policy` (a name such as ``"team_lead_approval_required"``, or a callable
        ``(request) -> allow() | deny(reason) | require_approval(who)``) before each execution;
        approvals live in `store` (default: the store of the run, the one its runtime
        checkpoints into, else the default store). Replaces the agent's `AccessPolicy` hook,
        if it had one. See kaizen.observe.policy."""
        from kaizen.observe.policy import AccessPolicy

        gate = AccessPolicy(policy, store=store)
        kept = tuple(hook for hook in self._hooks if not isinstance(hook, AccessPolicy))
        self._hooks = (*kept, gate)

    def guard_inputs(self, inputs: Mapping[str, Any]) -> None:
        """The config's ``input_guards``: `InputGuardError` naming the field, before any call."""
        option = self.config.input_guards
        if option is not None:
            from kaizen.agents.guards import check_inputs, input_guards

            guards = input_guards(option)
            if guards is not None:
                check_inputs(guards, self.name, inputs)

    def admit(self, inputs: Mapping[str, Any], *, pause: bool = False) -> Budget | None:
        """Before this agent's node runs, with its validated inputs: its `AuditLog` remembers
        them and its `AccessPolicy` decides (audited); returns the user's budget to charge with
        this execution's usage, if the policy gives one. `pause`: a missing approval pauses the
        node (a workflow's node) instead of raising `ApprovalRequired`. Without either hook,
        nothing happens."""
        if not self._hooks:
            return None
        from kaizen.observe.policy import admit, gates_among

        policy, audit = gates_among(self._hooks)
        if policy is None and audit is None:
            return None
        tools = tuple(t.name for t in self.tools_for_run()) if self._tool_sources else ()
        return admit(self.name, inputs, model=lambda: self.settings().model_name, tools=tools,
                     policy=policy, audit=audit, pause=pause)  # fmt: skip

    def with_signature(self, signature: Any) -> Agent:
        """A copy of this agent (same name, config, hooks and tools) with another signature."""
        return Agent(self.name, signature, self.config, hooks=self._hooks, tools=self._tool_sources)

    @property
    def output_schema(self) -> dict[str, Any]:
        """The signature's output JSON Schema (computed once; treat it as read-only)."""
        schema = self._output_schema
        if schema is None:
            schema = self._output_schema = self.signature.output_schema
        return schema

    def settings(self) -> ModelSettings:
        """The config with the environment applied and the model resolved, as the next run uses
        it: resolved again whenever a `KAIZEN_*` variable it reads has changed.

        Raises `ConfigError` when no model is configured and none is installed.
        """
        settled = _settled.get(None)
        if settled is not None and settled[0] is self:  # within this agent's own execution
            return settled[1]
        key = environment_key()
        cached = self._settings
        if cached is None or cached[0] != key:
            cached = self._settings = (key, resolve_settings(self.config))
        return cached[1]

    # -- execution ------------------------------------------------------------------------------

    def execute(self, **inputs: Any) -> ExecutionResult:
        """Validate `inputs`, run the agent, return its typed outputs (see the module docstring
        for what raises and what returns a failed result)."""
        return self._execute(inputs, ())

    async def execute_async(self, **inputs: Any) -> ExecutionResult:
        """`execute` for async code: the model call runs on the running event loop."""
        return await self._execute_async(inputs, ())

    def stream(self, **inputs: Any) -> AsyncIterator[StreamEvent]:
        """`async for event in agent.stream(**inputs)`: the run's events as they happen
        (`ContentDelta`, `ToolStart`, `ToolComplete`), then `Done(result)` or `Failed(error)`
        (see `kaizen.runtime.stream`). Inputs are validated before the first event."""
        self.call_signature(inputs).validate_inputs(inputs)

        async def start(hook: StreamHook) -> StreamEvent:
            result = await self._execute_async(inputs, (hook,))
            return Done(result, self.name, result.metadata.get("run_id"))

        return stream_async(start)

    def stream_sync(self, **inputs: Any) -> Iterator[StreamEvent]:
        """`stream` for sync code: `for event in agent.stream_sync(**inputs)`."""
        self.call_signature(inputs).validate_inputs(inputs)

        def start(hook: StreamHook) -> StreamEvent:
            result = self._execute(inputs, (hook,))
            return Done(result, self.name, result.metadata.get("run_id"))

        return stream_sync(start)

    def resume(
        self, result: ExecutionResult, answers: Mapping[str | int, Any] | None = None
    ) -> ExecutionResult:
        """Finish an execution that paused for a person (``result.stop_reason == "waiting"``)
        with `answers`: by interrupt id (``result.interrupts``) or index. An approval is True /
        False, or ``{"approved": bool, "reason": ..., "args": {...}}``. The loop continues
        from where it paused: the model is not asked again for the paused turn. Returns the
        new result (waiting again if an interrupt is still unanswered). Raises, running
        nothing: `RunNotWaitingError`, `UnknownInterruptError`, `InterruptAnswerError`."""
        from kaizen.agents.pause import resumed_answers

        paused, merged = resumed_answers(self, result, answers or {})
        result.paused = None  # resumed: a second resume of this result is refused
        resumed = self._execute(paused.inputs, (), (merged, paused.state))
        resumed.tool_calls[:0] = result.tool_calls  # the calls before the pause, then these
        return resumed

    async def resume_async(
        self, result: ExecutionResult, answers: Mapping[str | int, Any] | None = None
    ) -> ExecutionResult:
        """`resume` for async code."""
        from kaizen.agents.pause import resumed_answers

        paused, merged = resumed_answers(self, result, answers or {})
        result.paused = None
        resumed = await self._execute_async(paused.inputs, (), (merged, paused.state))
        resumed.tool_calls[:0] = result.tool_calls
        return resumed

    def _execute(
        self,
        inputs: Mapping[str, Any],
        hooks: tuple[object, ...],
        resuming: tuple[dict[int, Any], Any] | None = None,
    ) -> ExecutionResult:
        return run_sync(self._execution(inputs, hooks, resuming, sync=True))

    async def _execute_async(
        self,
        inputs: Mapping[str, Any],
        hooks: tuple[object, ...],
        resuming: tuple[dict[int, Any], Any] | None = None,
    ) -> ExecutionResult:
        return await run_async(self._execution(inputs, hooks, resuming, sync=False))

    def _execution(
        self,
        inputs: Mapping[str, Any],
        hooks: tuple[object, ...],
        resuming: tuple[dict[int, Any], Any] | None,
        *,
        sync: bool,
    ) -> Flow[ExecutionResult]:
        """One execution, for either driver: the one-node engine workflow run on the agent's
        runtime (`sync`: its nodes are the sync ones, run inline on this thread's loop; else
        the async ones, on the running loop), then the result, completed, paused or failed."""
        values, workflow, report, run_id, settings = self._prepare(inputs, sync=sync)
        # its node reads these (`settings()`), not the environment again: a tenth of a call
        settled = _settled.set((self, settings))
        started = time.perf_counter()
        options = {
            "workflow": workflow, "parameters": {self.name: values}, "run_id": run_id,
            "hooks": [report, *hooks],
            "continuing": {self.name: resuming} if resuming is not None else None,
        }  # fmt: skip
        try:
            results, _ = yield Call(self._run_inline, self.runtime.run, options)
        except (NodeExecutionError, BudgetExceededError) as exc:
            return failed(self, exc, report, run_id, started, settings, values)
        finally:  # (closed from another context, an abandoned stream's, it has none to restore)
            with contextlib.suppress(ValueError):
                _settled.reset(settled)
        return self._ended(results, report, run_id, started, values, resuming, not sync)

    def _run_inline(self, **options: Any) -> Any:
        """The sync side of the run: inline nodes on this thread's event loop."""
        return run_blocking(self.runtime.run(**options, inline_allowed=True))

    def _ended(
        self,
        results: Mapping[str, Mapping[str, Any]],
        report: ExecutionReport,
        run_id: str,
        started: float,
        values: Mapping[str, Any],
        resuming: tuple[dict[int, Any], Any] | None,
        asynchronous: bool,
    ) -> ExecutionResult:
        """The result of a run that ended without an error: completed, or paused."""
        if report.waiting is None:
            return completed(self, results, report, run_id, started, values)
        from kaizen.agents.pause import waiting_result

        answers = resuming[0] if resuming is not None else {}
        elapsed = time.perf_counter() - started
        return waiting_result(
            self, report, run_id, elapsed, values, answers, asynchronous=asynchronous
        )

    @property
    def runtime(self) -> LocalRuntime:
        """The runtime `execute` uses (its run records are looked up by `metadata['run_id']`)."""
        if self._runtime is None:
            with self._lock:
                if self._runtime is None:
                    from kaizen.runtime.local import LocalRuntime

                    self._runtime = LocalRuntime()
        return self._runtime

    def call_signature(self, inputs: Iterable[str] = ()) -> Signature:
        """The signature an execution with these input names runs with: the agent's own, or,
        for an agent created without one, that signature widened to take them
        (`kaizen.agents.freeform`)."""
        if not self.free_form:
            return self.signature
        from kaizen.agents.freeform import call_signature

        acts = bool(self._tool_sources) or self.config.strategy == "plan"
        return call_signature(self.signature, inputs, open_outputs=not acts)

    def _prepare(
        self, inputs: Mapping[str, Any], *, sync: bool
    ) -> tuple[dict[str, Any], Workflow, ExecutionReport, str, ModelSettings]:
        signature = self.call_signature(inputs)
        values = signature.validate_inputs(inputs)  # before anything runs
        self.guard_inputs(values)
        settings = self.settings()  # a ConfigError before anything runs, too
        workflow = self._engine(sync, signature)
        return values, workflow, ExecutionReport(self.name), uuid.uuid4().hex, settings

    def _engine(self, sync: bool, signature: Signature) -> Workflow:
        """The cached one-node workflow `execute` (sync) or `execute_async` runs."""
        key = (sync, signature)
        workflow = self._engines.get(key)
        if workflow is None:
            with self._lock:
                workflow = self._engines.get(key)
                if workflow is None:
                    from kaizen.workflow.builder import WorkflowBuilder

                    node = _agent_node()(self.name, agent=self, sync=sync, inputs_validated=True,
                                         signature=signature)  # fmt: skip
                    builder = WorkflowBuilder(self.name)
                    builder.add_node_instance(node)
                    if len(self._engines) >= _MAX_ENGINES:  # a free-form agent's input sets
                        self._engines.clear()
                    workflow = self._engines[key] = builder.build()
        return workflow

    # -- agents as nodes ------------------------------------------------------------------------

    def to_workflow_node(
        self, node_id: str | None = None, *, timeout: float | None = None, retries: int = 0
    ) -> AgentNode:
        """This agent as a workflow node (ports = signature fields); id defaults to the name.

        `timeout` / `retries` are the runtime's per-node policy (provider retries are separate:
        config key `retries`).
        """
        policy = ExecutionPolicy(timeout=timeout, retries=retries)
        return _agent_node()(node_id or self.name, policy=policy, agent=self)

    def to_workflow(self, node_id: str | None = None) -> WorkflowBuilder:
        """A `WorkflowBuilder` holding just this agent's node."""
        from kaizen.workflow.builder import WorkflowBuilder

        builder = WorkflowBuilder(self.name)
        builder.add_node_instance(self.to_workflow_node(node_id))
        return builder


def _middleware(middleware: object) -> Middleware:
    if not isinstance(middleware, Middleware):
        raise TypeError(f"{middleware!r} is not a middleware: subclass kaizen.Middleware")
    return middleware


def _agent_node() -> type[AgentNode]:
    """`AgentNode` (`kaizen.agents.node`, which imports this module), found by its registered
    type name: the registry loads it on first use."""
    from kaizen.nodes.registry import get_node_type

    return get_node_type("AgentNode")  # type: ignore[return-value]


def __getattr__(name: str) -> Any:
    """`AgentNode` and `LLMAgentNode` moved to `kaizen.agents.node`; still found here."""
    if name in ("AgentNode", "LLMAgentNode"):
        from kaizen.nodes.registry import get_node_type

        return get_node_type(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
