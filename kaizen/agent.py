"""`Agent` (a signature + a model config, executable and usable as a workflow node) and
`ExecutionResult` (its typed outputs, raw reply and metadata).

`agent.execute(**inputs)` is the workflow engine running a one-node workflow that holds the agent's
`AgentNode` (built once and cached); the model work itself lives in `kaizen.nodes.agent`.
"""

from __future__ import annotations

import asyncio
import reprlib
import threading
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from kaizen.config import AgentConfig, ModelSettings, resolve_settings
from kaizen.errors import ConfigError, KaizenError, NodeExecutionError
from kaizen.nodes.agent import AgentCallReport, AgentNode, _ExecuteScope
from kaizen.nodes.base import ExecutionPolicy

if TYPE_CHECKING:
    from kaizen.builder import WorkflowBuilder
    from kaizen.runtime import LocalRuntime
    from kaizen.signatures import Signature
    from kaizen.workflow import Workflow


# An agent created without a signature: a task, optional context, a free-text result.
DEFAULT_SIGNATURE_SPEC = "task: str, context: dict = {} -> result: str"

_default_signature: Signature | None = None

_SHORT = reprlib.Repr()  # keeps a result's repr to a line or two
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxdict = 6


def default_signature() -> Signature:
    """`task: str, context: dict = {} -> result: str`, built once."""
    global _default_signature
    if _default_signature is None:
        from kaizen.signatures import create_signature

        _default_signature = create_signature(DEFAULT_SIGNATURE_SPEC)
    return _default_signature


def coerce_signature(signature: Any) -> Signature:
    """A `Signature` from a spec string, a `Signature` (instance or class form), or None."""
    from kaizen.signatures import Signature, create_signature

    if signature is None:
        return default_signature()
    if isinstance(signature, Signature):
        return signature
    return create_signature(signature)


class ExecutionResult:
    """An agent's typed outputs (`result.answer`, `result["answer"]`), `.data`, `.raw`, `.metadata`.

    An output field named `data`, `raw` or `metadata` is reached with `result["data"]`.
    """

    __slots__ = ("data", "metadata", "raw")

    def __init__(self, data: dict[str, Any], *, raw: str, metadata: dict[str, Any]) -> None:
        self.data = data
        self.raw = raw
        self.metadata = metadata

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            data = object.__getattribute__(self, "data")
        except AttributeError:
            raise AttributeError(name) from None
        if name in data:
            return data[name]
        fields = ", ".join(data) or "(none)"
        raise AttributeError(
            f"this result has no output field {name!r}; its outputs are: {fields} "
            "(plus .data, .raw, .metadata)"
        )

    def __getitem__(self, name: str) -> Any:
        try:
            return self.data[name]
        except KeyError:
            raise KeyError(
                f"no output field {name!r}; outputs are: {', '.join(self.data) or '(none)'}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self.data

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __dir__(self) -> list[str]:
        return sorted({*self.data, "data", "raw", "metadata"})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExecutionResult):
            return NotImplemented
        return self.data == other.data and self.raw == other.raw

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={_SHORT.repr(v)}" for k, v in self.data.items())
        return f"ExecutionResult({fields})"


class Agent:
    """A named agent: a `Signature`, an `AgentConfig`, and a lazily resolved model.

    Create agents with `kaizen.create_agent(...)` or `Kaizen(...).create_agent(...)`.
    """

    def __init__(
        self,
        name: str,
        signature: Any = None,
        config: AgentConfig | Mapping[str, Any] | None = None,
        *,
        defaults: AgentConfig | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"an agent needs a non-empty name, got {name!r}")
        self.name = name
        own = AgentConfig.coerce(config, where=f"agent {name!r}")
        self.config: AgentConfig = own.merged_over(defaults) if defaults is not None else own
        sig = coerce_signature(signature)
        instructions = self.config.effective_instructions
        if instructions is not None:
            sig = sig.with_instructions(instructions)
        self.signature: Signature = sig
        self._output_schema: dict[str, Any] | None = None
        self._settings: ModelSettings | None = None
        # execute() and execute_async() each get a cached one-node workflow (keyed by "sync"):
        # the sync one runs AgentNode.run inline, so a sync caller never crosses into a loop
        self._engines: dict[bool, tuple[Workflow, AgentNode]] = {}
        self._runtime: LocalRuntime | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # what defines the agent travels (to another process, a Ray worker); caches do not
        return {"name": self.name, "config": self.config, "signature": self.signature}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.name = state["name"]
        self.config = state["config"]
        self.signature = state["signature"]
        self._output_schema = None
        self._settings = None
        self._engines = {}
        self._runtime = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        model = self.config.model
        return f"Agent({self.name!r}, inputs={list(self.signature.input_names)}, " + (
            f"outputs={list(self.signature.output_names)}, model={model!r})"
        )

    @property
    def output_schema(self) -> dict[str, Any]:
        """The signature's output JSON Schema (computed once; treat it as read-only)."""
        schema = self._output_schema
        if schema is None:
            schema = self._output_schema = self.signature.output_schema
        return schema

    # -- model settings -------------------------------------------------------------------------

    def settings(self) -> ModelSettings:
        """The config with the environment applied and the model resolved (first use, then cached).

        Raises `ConfigError` when no model is configured and none is installed.
        """
        settings = self._settings
        if settings is None:
            settings = self._settings = resolve_settings(self.config)
        return settings

    # -- execution ------------------------------------------------------------------------------

    def execute(self, **inputs: Any) -> ExecutionResult:
        """Validate `inputs`, run the agent, return its typed outputs.

        Raises `InputValidationError` (before any model call), `ConfigError` (no model),
        `ModelError` (provider failure after retries), `OutputParseError` (no valid reply within
        `max_parse_attempts`; `.raw` holds the last reply).
        """
        values = self.signature.validate_inputs(inputs)
        self.settings()
        workflow, runtime, node = self._engine(sync=True)
        run_id = uuid.uuid4().hex
        scope = node._scopes[run_id] = _ExecuteScope()
        failure: BaseException | None = None

        def run() -> tuple[dict[str, dict[str, Any]], str]:
            return runtime.execute(workflow, {self.name: values}, run_id=run_id)

        try:
            if asyncio._get_running_loop() is None:
                results, _ = run()
            else:  # called from async code (a notebook cell): run where no loop is running
                from kaizen.runtime import _call_in_new_thread

                results, _ = _call_in_new_thread(run, "kaizen:agent-execute")
        except NodeExecutionError as exc:
            failure = _unwrap(exc)
        finally:
            del node._scopes[run_id]
        if failure is not None:
            raise failure
        return self._result(results, scope.report, run_id)

    async def execute_async(self, **inputs: Any) -> ExecutionResult:
        """`execute` for async code: the model call runs on the running event loop."""
        values = self.signature.validate_inputs(inputs)
        self.settings()
        workflow, runtime, node = self._engine(sync=False)
        run_id = uuid.uuid4().hex
        scope = node._scopes[run_id] = _ExecuteScope()
        failure: BaseException | None = None
        try:
            results, _ = await runtime.execute_async(workflow, {self.name: values}, run_id=run_id)
        except NodeExecutionError as exc:
            failure = _unwrap(exc)
        finally:
            del node._scopes[run_id]
        if failure is not None:
            raise failure
        return self._result(results, scope.report, run_id)

    @property
    def runtime(self) -> LocalRuntime:
        """The runtime `execute` uses (its run records are looked up by `metadata['run_id']`)."""
        if self._runtime is None:
            with self._lock:
                if self._runtime is None:
                    from kaizen.runtime import LocalRuntime

                    self._runtime = LocalRuntime()
        return self._runtime

    def _engine(self, *, sync: bool) -> tuple[Workflow, LocalRuntime, AgentNode]:
        """The cached one-node workflow `execute` (sync) or `execute_async` runs, its runtime,
        and the node in it."""
        engine = self._engines.get(sync)
        if engine is None:
            with self._lock:
                engine = self._engines.get(sync)
                if engine is None:
                    from kaizen.builder import WorkflowBuilder

                    node = AgentNode(self.name, agent=self, sync=sync)
                    builder = WorkflowBuilder(self.name)
                    builder.add_node_instance(node)
                    engine = self._engines[sync] = (builder.build(), node)
        return engine[0], self.runtime, engine[1]

    def _result(
        self, results: Mapping[str, Mapping[str, Any]], report: AgentCallReport | None, run_id: str
    ) -> ExecutionResult:
        outputs = results.get(self.name)
        if outputs is None or report is None:  # skipped (the runtime says why) or never ran
            node_run = self.runtime.get_record(run_id).nodes.get(self.name)
            why = node_run.skip_reason or node_run.error if node_run is not None else None
            raise KaizenError(
                f"agent {self.name!r} produced no result in run {run_id!r}: {why or 'unknown'}"
            )
        usage = report.usage
        metadata = {
            "agent": self.name,
            "model": report.model,
            "latency": report.latency,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "cost": usage.cost,
            "attempts": report.attempts,
            "provider_attempts": report.provider_attempts,
            "finish_reason": report.finish_reason,
            "run_id": run_id,
        }
        return ExecutionResult(dict(outputs), raw=report.raw, metadata=metadata)

    # -- agents as nodes ------------------------------------------------------------------------

    def to_workflow_node(
        self, node_id: str | None = None, *, timeout: float | None = None, retries: int = 0
    ) -> AgentNode:
        """This agent as a workflow node (ports = signature fields); id defaults to the name.

        `timeout` / `retries` are the runtime's per-node policy (provider retries are separate:
        config key `retries`).
        """
        policy = ExecutionPolicy(timeout=timeout, retries=retries)
        return AgentNode(node_id or self.name, policy=policy, agent=self)

    def to_workflow(self, node_id: str | None = None) -> WorkflowBuilder:
        """A `WorkflowBuilder` holding just this agent's node."""
        from kaizen.builder import WorkflowBuilder

        builder = WorkflowBuilder(self.name)
        builder.add_node_instance(self.to_workflow_node(node_id))
        return builder


def _unwrap(exc: NodeExecutionError) -> BaseException:
    """The node's own exception (its chain intact) instead of the runtime's wrapper."""
    cause = exc.__cause__
    return cause if isinstance(cause, Exception) else exc


__all__ = [
    "DEFAULT_SIGNATURE_SPEC",
    "Agent",
    "ExecutionResult",
    "coerce_signature",
    "default_signature",
]
