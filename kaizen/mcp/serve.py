"""``kaizen mcp serve module:attr``: an agent or a built workflow as an MCP server with one tool.

- An `Agent`: the tool is named after the agent; its input schema is the signature's inputs; a
  call runs ``agent.execute_async(**arguments)`` and returns the outputs.
- A `Workflow` (or a builder, built here, or a function returning either): the tool is named
  after the workflow; its parameters are the workflow's open inputs, each named by its port, or
  ``node.port`` when several nodes leave a port of that name open; a call runs the workflow on a
  `LocalRuntime` and returns ``{node_id: {port: value}}``.

The input schema refuses unknown keys and carries the limits an agent checks (``ge``, ``le``,
...); the tool's ``outputSchema`` describes the outputs, which go back as structured content and
as the same JSON in a text block. Invalid arguments, a failed agent or a failed run are tool
errors (``isError``) whose text says what went wrong.

`served_tool` describes the one tool, `build_server` makes the SDK server (usable in memory:
``MCPServer.in_memory(build_server(agent))``), `serve` runs it over stdio or Streamable HTTP.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kaizen.logs import host_logging_kept
from kaizen.targets import load_target, to_json

if TYPE_CHECKING:
    from kaizen.agents.agent import Agent
    from kaizen.workflow.workflow import Workflow

__all__ = [
    "ServedTool",
    "build_server",
    "load_target",
    "outputs_schema",
    "port_schema",
    "results_schema",
    "serve",
    "served_tool",
    "workflow_inputs",
]


@dataclass(frozen=True, slots=True)
class ServedTool:
    """The one tool a served agent or workflow offers: `run(arguments)` returns its outputs as
    JSON-able values, or raises an exception whose message the caller reads."""

    name: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    run: Callable[[dict[str, Any]], Awaitable[Any]]


def served_tool(target: Agent | Workflow, *, name: str | None = None) -> ServedTool:
    """The tool that serves `target` (see the module docstring)."""
    from kaizen.agents.agent import Agent

    if isinstance(target, Agent):
        return _agent_tool(target, name)
    return _workflow_tool(target, name)


def _agent_tool(agent: Agent, name: str | None) -> ServedTool:
    signature = agent.signature
    schema = _clean_schema(signature.input_model.model_json_schema(by_alias=True))
    schema["additionalProperties"] = False  # (the agent refuses unknown inputs)
    outputs = ", ".join(signature.output_names)
    description = signature.instructions or f"Ask the agent {agent.name!r}."
    description += f" Inputs: {', '.join(signature.input_names)}. Returns JSON with: {outputs}."

    async def run(arguments: dict[str, Any]) -> Any:
        result = await agent.execute_async(**arguments)
        if not result.success:
            error = result.error
            raise RuntimeError(f"agent {agent.name!r} failed: {error}")
        return _jsonable(result.data)

    outputs_schema = _clean_schema(signature.output_schema)
    return ServedTool(_tool_name(name or agent.name), description, schema, outputs_schema, run)


def _workflow_tool(workflow: Workflow, name: str | None) -> ServedTool:
    from kaizen.runtime.local import LocalRuntime

    inputs = workflow_inputs(workflow)
    properties = {prop: schema for prop, (_, _, schema, _) in inputs.items()}
    required = [prop for prop, (_, _, _, needed) in inputs.items() if needed]
    schema: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
    schema["additionalProperties"] = False
    description = (
        f"Run the workflow {workflow.name!r} ({len(workflow.nodes)} nodes). Returns JSON: "
        "{node_id: {port: value}} for every node that produced outputs."
    )
    runtime = LocalRuntime()

    async def run(arguments: dict[str, Any]) -> Any:
        parameters: dict[str, dict[str, Any]] = {}
        for prop, value in arguments.items():
            if prop not in inputs:
                raise ValueError(f"{prop!r} is not an input of this workflow ({_listing(inputs)})")
            node_id, port, _, _ = inputs[prop]
            parameters.setdefault(node_id, {})[port] = value
        results, _ = await runtime.execute_async(workflow, parameters)
        return _jsonable(results)

    return ServedTool(
        _tool_name(name or workflow.name), description, schema, results_schema(workflow), run
    )


def workflow_inputs(workflow: Workflow) -> dict[str, tuple[str, str, dict[str, Any], bool]]:
    """`{property: (node_id, port, JSON Schema, required)}` for every input a run may set: the
    unconnected, unbound ports. A port name open on several nodes becomes ``node.port``."""
    open_ports = [
        (plan.node_id, port_name, port)
        for plan in workflow.plan.nodes
        for port_name, port in plan.open_ports.items()
        if port_name not in plan.bound
    ]
    counts: dict[str, int] = {}
    for _, port_name, _ in open_ports:
        counts[port_name] = counts.get(port_name, 0) + 1
    found = {}
    for node_id, port_name, port in open_ports:
        prop = port_name if counts[port_name] == 1 else f"{node_id}.{port_name}"
        node = workflow.nodes[node_id]
        schema = port_schema(_checked_type(node, port_name, port.type))
        if port.description:
            schema["description"] = port.description
        if not port.required:
            default = _jsonable(port.default)
            if _is_json(default):
                schema["default"] = default
        found[prop] = (node_id, port_name, schema, port.required)
    return found


def build_server(target: Agent | Workflow, *, name: str | None = None) -> Any:
    """An SDK low-level server (``mcp.server.Server``) offering `target` as one tool."""
    with host_logging_kept():
        import mcp_types as types
        from mcp.server import Server

    tool = served_tool(target, name=name)
    listing = types.Tool(
        name=tool.name,
        description=tool.description,
        input_schema=tool.input_schema,
        output_schema=tool.output_schema,
    )

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[listing])

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        if params.name != tool.name:
            return _error(f"unknown tool {params.name!r}; this server has one tool: {tool.name!r}")
        try:
            outputs = await tool.run(dict(params.arguments or {}))
        except Exception as exc:
            return _error(_message(exc))
        text = json.dumps(outputs, ensure_ascii=False)
        structured = outputs if isinstance(outputs, dict) else {"result": outputs}
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)], structured_content=structured
        )

    return Server(
        name or tool.name,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        get_tool_input_schema=lambda requested: (
            tool.input_schema if requested == tool.name else None
        ),
    )


def serve(
    target: str | Agent | Workflow,
    *,
    transport: str = "stdio",
    host: str = "127.0.0.1",
    port: int = 8000,
    name: str | None = None,
) -> None:
    """Serve `target` (an object, or ``module:attr``) until stopped: over stdio, or Streamable
    HTTP at ``http://host:port/mcp``."""
    import anyio

    resolved = load_target(target) if isinstance(target, str) else target
    server = build_server(resolved, name=name)
    if transport == "stdio":

        async def run_stdio() -> None:
            from mcp.server.stdio import stdio_server

            async with stdio_server() as (read, write):
                await server.run(read, write, server.create_initialization_options())

        anyio.run(run_stdio)
    elif transport == "http":
        import uvicorn

        app = server.streamable_http_app(host=host)
        uvicorn.run(app, host=host, port=port, log_level="warning")
    else:
        from kaizen.errors import ConfigError

        raise ConfigError(f"transport {transport!r} is not one of: stdio, http")


# -- helpers ---------------------------------------------------------------------------------------


def _error(text: str) -> Any:
    import mcp_types as types

    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


def _message(exc: BaseException) -> str:
    from kaizen.errors import KaizenError

    text = str(exc).strip() or type(exc).__name__
    return text if isinstance(exc, KaizenError) else f"{type(exc).__name__}: {text}"


def _tool_name(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", name) or "run"
    return ("_" + safe if safe[0].isdigit() or safe[0] == "-" else safe)[:64]


def port_schema(annotation: Any) -> dict[str, Any]:
    """The JSON Schema of a port's type ({} for Any, or a type pydantic cannot describe)."""
    if annotation is Any:
        return {}
    try:
        import pydantic

        return _clean_schema(pydantic.TypeAdapter(annotation).json_schema())
    except Exception:
        return {}


def _checked_type(node: Any, port: str, annotation: Any) -> Any:
    """The port's type with the limits the node checks its inputs against: an agent's
    signature constraints (``ge``, ``le``, ``min_length``, ...), so a schema declares them."""
    from kaizen.agents.node import AgentNode

    if not isinstance(node, AgentNode):
        return annotation
    field = next((f for f in node.agent.signature.input_fields if f.name == port), None)
    if field is None or not field.constraints:
        return annotation
    from typing import Annotated

    import pydantic

    return Annotated[annotation, pydantic.Field(**field.constraints)]


def results_schema(workflow: Workflow) -> dict[str, Any]:
    """The JSON Schema of a run's results, ``{node_id: {port: value}}`` (a node that produced
    no outputs is left out)."""
    return {
        "type": "object",
        "description": "Each completed node's outputs, by node id and port.",
        "properties": {node_id: outputs_schema(workflow, node_id) for node_id in workflow.order},
        "additionalProperties": False,
    }


def outputs_schema(workflow: Workflow, node_id: str) -> dict[str, Any]:
    """The JSON Schema of one node's outputs: an object with a property per output port."""
    properties = {}
    for port_name, port in workflow.nodes[node_id].outputs.items():
        schema = port_schema(port.type)
        if port.description:
            schema["description"] = port.description
        properties[port_name] = schema
    return {"type": "object", "properties": properties}


def _clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` without pydantic's titles (noise for a model)."""

    def strip(node: Any, in_properties: bool = False) -> Any:
        if isinstance(node, dict):
            return {
                key: strip(value, key == "properties" and not in_properties)
                for key, value in node.items()
                if in_properties or key != "title"
            }
        if isinstance(node, list):
            return [strip(item) for item in node]
        return node

    cleaned: dict[str, Any] = strip(schema)
    return cleaned


def _jsonable(value: Any) -> Any:
    """`value` as plain JSON values (pydantic models, dataclasses, sets, ... converted)."""
    return json.loads(to_json(value))


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _listing(inputs: dict[str, Any]) -> str:
    return "inputs: " + (", ".join(inputs) or "none")
