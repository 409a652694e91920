"""MCP both ways, against real servers: the demo server in memory and as a stdio subprocess,
`kaizen mcp serve` over stdio and Streamable HTTP. Nothing is mocked."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("mcp")

import mcp_types as types

from kaizen.mcp import (
    MCPConnectionError,
    MCPServer,
    MCPTimeoutError,
    MCPToolError,
)
from kaizen.mcp.client import _tool_name
from kaizen.mcp.results import result_text
from kaizen.mcp.session import Redactor
from kaizen.testing.mcp_server import demo_server
from kaizen.tools import ToolArgumentError, collect_tools

DEMO = [sys.executable, "-m", "kaizen.testing.mcp_server"]
DEMO_TOOLS = {"add", "stats", "fail", "slow", "pixel", "pid", "env"}

FLOWS = """
import kaizen
from kaizen import WorkflowBuilder
from kaizen.testing import ScriptedModel

model = ScriptedModel(lambda messages: {"answer": "forty-two", "confidence": 0.5})
qa = kaizen.create_agent(
    "qa", signature="question -> answer, confidence: float", config={"model": model}
)


def double(x: int) -> int:
    return 2 * x


def doubler():
    wf = WorkflowBuilder("doubler")
    wf.add_node("FunctionNode", "double", {"function": double})
    return wf


chooser = kaizen.create_agent(
    "pick",
    signature="k: int (ge=1, le=5) -> choice",
    config={"model": ScriptedModel(lambda messages: {"choice": "c"})},
)


def picker():
    wf = WorkflowBuilder("picker")
    wf.add_agent(chooser, "pick")
    return wf
"""


def stdio_demo(**options: object) -> MCPServer:
    return MCPServer.stdio(DEMO[0], args=DEMO[1:], **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def stdio() -> Iterator[MCPServer]:
    with stdio_demo(prefix="demo_", env={"DEMO_SETTING": "from-the-client"}) as server:
        yield server


@pytest.fixture(scope="module")
def memory() -> Iterator[MCPServer]:
    with MCPServer.in_memory(demo_server()) as server:
        yield server


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    (tmp_path / "flows.py").write_text(FLOWS, encoding="utf-8")
    return tmp_path


# -- listing and calling ---------------------------------------------------------------------------


def test_an_in_memory_server_lists_its_tools_with_their_schemas(memory: MCPServer) -> None:
    tools = {tool.name: tool for tool in memory.list_tools()}
    assert set(tools) == DEMO_TOOLS
    add = tools["add"]
    assert add.description == "Add two integers."
    assert add.parameters["properties"].keys() == {"a", "b"}
    assert add.parameters["required"] == ["a", "b"]
    with pytest.raises(ToolArgumentError, match="'x' is not of type 'integer'"):
        add.validate({"a": 1, "b": "x"})  # checked before any call


def test_results_reach_the_model_as_text(memory: MCPServer) -> None:
    assert memory.call("add", {"a": 2, "b": 3}) == "5"
    assert json.loads(memory.call("stats", {"numbers": [1, 2, 6]})) == {
        "count": 3,
        "sum": 9,
        "mean": 3,
    }
    assert memory.call("pixel") == "[image: image/png, 67 bytes]"


def test_a_stdio_server_prefixes_its_tool_names(stdio: MCPServer) -> None:
    names = {tool.name for tool in stdio.list_tools()}
    assert names == {f"demo_{name}" for name in DEMO_TOOLS}
    assert stdio.call("demo_add", {"a": 1, "b": 2}) == "3"
    assert stdio.call("add", {"a": 1, "b": 2}) == "3"  # the server's own name works too


def test_tools_are_called_through_the_tool_interface_sync_and_async(stdio: MCPServer) -> None:
    add = {tool.name: tool for tool in stdio.list_tools()}["demo_add"]
    assert add.is_async
    assert add.invoke({"a": 4, "b": 5}) == "9"
    assert asyncio.run(add.ainvoke({"a": 6, "b": 7})) == "13"


def test_the_env_given_reaches_the_server_process(stdio: MCPServer) -> None:
    assert stdio.call("env", {"name": "DEMO_SETTING"}) == "from-the-client"


def test_the_tool_list_is_cached_until_refreshed(memory: MCPServer) -> None:
    first = memory.list_tools()
    assert [id(t) for t in memory.list_tools()] == [id(t) for t in first]
    memory.refresh()
    again = memory.list_tools()
    assert [t.name for t in again] == [t.name for t in first]
    assert id(again[0]) != id(first[0])


def test_a_toolset_expands_in_a_tools_list(memory: MCPServer) -> None:
    def shout(text: str) -> str:
        return text.upper()

    names = [tool.name for tool in collect_tools([shout, memory])]
    assert names[0] == "shout" and set(names[1:]) == DEMO_TOOLS


# -- callers on any thread or loop -----------------------------------------------------------------


def test_calls_from_many_threads_share_one_session(stdio: MCPServer) -> None:
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: stdio.call("add", {"a": i, "b": i}), range(24)))
    assert results == [str(2 * i) for i in range(24)]
    pids = {stdio.call("pid") for _ in range(3)}
    assert len(pids) == 1


def test_calls_from_inside_running_event_loops(stdio: MCPServer) -> None:
    async def main(offset: int) -> list[str]:
        assert stdio.call("add", {"a": offset, "b": 0}) == str(offset)  # a blocking call, too
        calls = (stdio.acall("add", {"a": offset, "b": i}) for i in range(10))
        return list(await asyncio.gather(*calls))

    outcomes: dict[int, list[str]] = {}

    def in_thread(offset: int) -> None:
        outcomes[offset] = asyncio.run(main(offset))

    threads = [threading.Thread(target=in_thread, args=(100 * k,)) for k in range(1, 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == {100 * k: [str(100 * k + i) for i in range(10)] for k in range(1, 4)}


def started(marker: Path) -> bool:
    """Wait until the demo server's `slow` call made `marker` (it began); False after 30 s."""
    deadline = time.monotonic() + 30
    while not marker.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_cancelled_caller_cancels_its_call_and_the_session_goes_on(
    stdio: MCPServer, tmp_path: Path
) -> None:
    marker = tmp_path / "slow-started"

    async def main() -> str:
        task = asyncio.ensure_future(stdio.acall("slow", {"seconds": 30, "started": str(marker)}))
        assert await asyncio.to_thread(started, marker)  # the call is on the server
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await stdio.acall("add", {"a": 1, "b": 1})

    assert asyncio.run(main()) == "2"


# -- failures ------------------------------------------------------------------------------------


def test_a_tool_error_carries_the_servers_text(memory: MCPServer) -> None:
    with pytest.raises(MCPToolError, match="disk is full") as caught:
        memory.call("fail", {"message": "disk is full"})
    assert caught.value.tool == "fail"
    fail = {tool.name: tool for tool in memory.list_tools()}["fail"]
    with pytest.raises(MCPToolError, match="no such path"):
        asyncio.run(fail.ainvoke({"message": "no such path"}))


def test_an_unknown_tool_is_a_tool_error(memory: MCPServer) -> None:
    with pytest.raises(MCPToolError, match="Unknown tool: nope"):
        memory.call("nope")


def git_like_server() -> object:
    """A low-level SDK server whose own tool names carry a `git_` prefix and which answers an
    unknown tool with a JSON-RPC error (-32602), as the TypeScript SDK's servers do."""
    from mcp.server import Server
    from mcp.shared.exceptions import MCPError as SDKError

    names = ("git_status", "git_log")

    async def list_tools(ctx: object, params: object) -> types.ListToolsResult:
        schema = {"type": "object", "properties": {}}
        return types.ListToolsResult(
            tools=[types.Tool(name=n, description=n, input_schema=schema) for n in names]
        )

    async def call_tool(ctx: object, params: types.CallToolRequestParams) -> types.CallToolResult:
        if params.name not in names:
            raise SDKError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
        return types.CallToolResult(content=[types.TextContent(type="text", text=params.name)])

    return Server("git", on_list_tools=list_tools, on_call_tool=call_tool)


def test_a_servers_own_name_is_tried_before_the_prefix_is_stripped() -> None:
    with MCPServer.in_memory(git_like_server(), prefix="git_") as server:
        assert server.call("git_status") == "git_status"  # before the list was ever read
        assert {tool.name for tool in server.list_tools()} == {"git_git_status", "git_git_log"}
        assert server.call("git_log") == "git_log"
        assert server.call("git_git_log") == "git_log"  # the name Kaizen shows works too


def test_a_json_rpc_unknown_tool_error_is_a_tool_error() -> None:
    with MCPServer.in_memory(git_like_server()) as server:
        with pytest.raises(MCPToolError, match="Unknown tool: git_push") as caught:
            server.call("git_push")
        assert caught.value.tool == "git_push"


def test_a_slow_tool_times_out_clearly_and_the_session_stays_usable() -> None:
    with MCPServer.in_memory(demo_server(), timeout=0.3) as server:
        pid = server.call("pid")
        with pytest.raises(MCPTimeoutError, match=r"tool 'slow' got no answer within 0.3s"):
            server.call("slow", {"seconds": 5})
        assert server.call("add", {"a": 1, "b": 1}) == "2"
        assert server.call("pid") == pid


@pytest.mark.slow
def test_a_killed_server_is_restarted_on_the_next_call() -> None:
    with stdio_demo() as server:
        first = int(server.call("pid"))
        os.kill(first, signal.SIGKILL)
        assert server.call("add", {"a": 2, "b": 2}) == "4"
        second = int(server.call("pid"))
        assert second != first
        os.kill(second, signal.SIGKILL)
        assert server.call("add", {"a": 3, "b": 3}) == "6"  # and again, on a later call


@pytest.mark.slow
def test_a_server_that_cannot_restart_gives_a_clear_error(tmp_path: Path) -> None:
    script = tmp_path / "once.py"
    script.write_text(
        "import os, sys\n"
        "marker = sys.argv[1]\n"
        "if os.path.exists(marker):\n"
        "    print('refusing to start twice', file=sys.stderr)\n"
        "    sys.exit(3)\n"
        "open(marker, 'w').close()\n"
        "from kaizen.testing.mcp_server import main\n"
        "main()\n",
        encoding="utf-8",
    )
    with MCPServer.stdio(sys.executable, [str(script), str(tmp_path / "started")]) as server:
        os.kill(int(server.call("pid")), signal.SIGKILL)
        with pytest.raises(MCPConnectionError, match="refusing to start twice") as caught:
            server.call("add", {"a": 1, "b": 1})
        assert "cannot connect" in str(caught.value)


def test_a_server_that_fails_to_start_is_described_without_its_secrets() -> None:
    crash = "import sys; print('bad key sk-live-123456', file=sys.stderr); sys.exit(2)"
    server = MCPServer.stdio(sys.executable, ["-c", crash], env={"API_KEY": "sk-live-123456"})
    with pytest.raises(MCPConnectionError) as caught:
        server.list_tools()
    message = str(caught.value)
    assert "cannot connect" in message and "bad key ***" in message
    assert "sk-live-123456" not in message
    assert "sk-live-123456" not in repr(server) and "API_KEY" in repr(server)


def test_a_missing_command_is_a_connection_error() -> None:
    with pytest.raises(MCPConnectionError, match="no-such-mcp-command"):
        MCPServer.stdio("no-such-mcp-command").list_tools()


def test_an_unreachable_http_server_is_reported_without_credentials() -> None:
    port = free_port()
    server = MCPServer.http(
        f"http://user:pa55w0rd-x@127.0.0.1:{port}/mcp?token=tok-secret-999",
        headers={"X-Api-Key": "key-secret-888"},
        connect_timeout=10,
    )
    with pytest.raises(MCPConnectionError) as caught:
        server.list_tools()
    shown = f"{caught.value} {server!r}"
    for secret in ("pa55w0rd-x", "tok-secret-999", "key-secret-888"):
        assert secret not in shown
    assert f"127.0.0.1:{port}/mcp" in shown and "X-Api-Key" in repr(server)


def test_bad_options_are_config_errors() -> None:
    from kaizen.errors import ConfigError

    with pytest.raises(ConfigError, match="prefix"):
        MCPServer.in_memory(demo_server(), prefix="fs.")
    with pytest.raises(ConfigError, match="timeout"):
        MCPServer.in_memory(demo_server(), timeout=0)
    with pytest.raises(ConfigError, match="http"):
        MCPServer.http("ftp://example.com/mcp")


def test_closing_stops_the_server_process_and_a_later_call_starts_a_new_one() -> None:
    server = stdio_demo()
    pid = int(server.call("pid"))
    server.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert int(server.call("pid")) != pid
    server.close()


def test_importing_kaizen_mcp_does_not_import_the_sdk() -> None:
    code = "import sys, kaizen.mcp; print([m for m in ('mcp', 'mcp_types') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_closing_fails_calls_still_running_instead_of_reconnecting(tmp_path: Path) -> None:
    marker = tmp_path / "slow-started"
    with stdio_demo() as server:
        pid = server.call("pid")
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(server.call, "slow", {"seconds": 30, "started": str(marker)})
            assert started(marker)  # the call is on the server
            server.close()
            with pytest.raises(MCPConnectionError, match="closed while tool 'slow' was running"):
                pending.result(20)
        assert server._session.connection is None  # nothing reopened behind the user's back
        assert server.call("pid") != pid


def test_sessions_left_open_are_closed_at_interpreter_exit() -> None:
    script = (
        "import sys\n"
        "from kaizen.mcp import MCPServer\n"
        "server = MCPServer.stdio(sys.executable, ['-m', 'kaizen.testing.mcp_server'])\n"
        "print(server.call('pid'), flush=True)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    child = int(out.stdout.strip())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"the server process {child} outlived its client")


# -- result text and names -------------------------------------------------------------------------


def test_result_text_describes_every_kind_of_content() -> None:
    result = types.CallToolResult(
        content=[
            types.TextContent(type="text", text="two files"),
            types.ResourceLink(type="resource_link", uri="file:///a.txt", name="a.txt"),
            types.EmbeddedResource(
                type="resource",
                resource=types.TextResourceContents(uri="file:///b.txt", text="hello"),
            ),
            types.AudioContent(type="audio", data="AAAA", mime_type="audio/wav"),
        ],
        structured_content={"files": 2},
    )
    assert result_text(result) == (
        "two files\n\n[resource link: file:///a.txt (a.txt)]\n\nhello\n\n"
        '[audio: audio/wav, 3 bytes]\n\n{"files":2}'
    )


@given(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=4))
def test_structured_content_sent_twice_is_read_once(value: dict[str, object]) -> None:
    text = json.dumps(value, indent=2)
    result = types.CallToolResult(
        content=[types.TextContent(type="text", text=text)], structured_content=value
    )
    assert json.loads(result_text(result)) == value


@given(st.text(max_size=80), st.sampled_from(["", "fs_", "x-"]))
def test_tool_names_are_always_acceptable_to_model_apis(name: str, prefix: str) -> None:
    import re

    made = _tool_name(prefix, name)
    assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]{0,63}", made)


@given(st.lists(st.text(min_size=4, max_size=12), max_size=4), st.text(max_size=40))
def test_redaction_leaves_no_secret_behind(secrets: list[str], text: str) -> None:
    redact = Redactor(secrets)
    out = redact(text + "".join(secrets))
    for secret in sorted(secrets, key=len, reverse=True):
        assert secret not in out or any(secret in s and s != secret for s in secrets)


# -- kaizen mcp serve ------------------------------------------------------------------------------


def test_kaizen_mcp_serve_exposes_an_agent_over_stdio(flows: Path) -> None:
    command = [sys.executable, "-m", "kaizen", "mcp", "serve", "flows:qa"]
    with MCPServer.stdio(command[0], command[1:], cwd=flows) as server:
        [tool] = server.list_tools()
        assert tool.name == "qa"
        assert tool.parameters["properties"] == {"question": {"type": "string"}}
        assert tool.parameters["required"] == ["question"]
        outputs = json.loads(server.call("qa", {"question": "What is the answer?"}))
        assert outputs == {"answer": "forty-two", "confidence": 0.5}
        with pytest.raises(MCPToolError, match="question"):
            server.call("qa", {"query": "wrong field"})


def test_a_served_workflow_takes_its_open_inputs(flows: Path) -> None:
    sys.path.insert(0, str(flows))
    try:
        from kaizen.mcp.serve import build_server, load_target

        workflow = load_target("flows:doubler")
    finally:
        sys.path.remove(str(flows))
    with MCPServer.in_memory(build_server(workflow)) as server:
        [tool] = server.list_tools()
        assert tool.name == "doubler"
        assert tool.parameters["properties"] == {"x": {"type": "integer"}}
        assert json.loads(server.call("doubler", {"x": 21})) == {"double": {"result": 42}}
        with pytest.raises(MCPToolError, match=r"double\.x expects int"):
            server.call("doubler", {"x": "many"})


def served(flows: Path, target: str) -> object:
    sys.path.insert(0, str(flows))
    try:
        from kaizen.mcp.serve import build_server, load_target

        return build_server(load_target(target))
    finally:
        sys.path.remove(str(flows))


async def listed_tool(server: object) -> types.Tool:
    """The one tool a served target offers, as the SDK's own client lists it."""
    from mcp import Client

    async with Client(server) as client:
        [tool] = (await client.list_tools()).tools
        return tool


def test_a_served_agents_schema_refuses_extra_keys_as_the_server_does(flows: Path) -> None:
    tool = asyncio.run(listed_tool(served(flows, "flows:qa")))
    assert tool.input_schema["additionalProperties"] is False
    with (
        MCPServer.in_memory(served(flows, "flows:qa")) as server,
        pytest.raises(MCPToolError, match="extra"),
    ):
        server.call("qa", {"question": "?", "extra": 1})


def test_a_served_workflow_declares_the_range_limits_its_agents_check(flows: Path) -> None:
    tool = asyncio.run(listed_tool(served(flows, "flows:picker")))
    assert tool.input_schema["properties"]["k"] == {"type": "integer", "minimum": 1, "maximum": 5}
    with MCPServer.in_memory(served(flows, "flows:picker")) as server:
        assert json.loads(server.call("picker", {"k": 5})) == {"pick": {"choice": "c"}}
        with pytest.raises(MCPToolError, match="k"):
            server.call("picker", {"k": 6})


@pytest.mark.parametrize("target", ["flows:qa", "flows:doubler", "flows:picker"])
def test_a_served_tool_declares_the_structured_content_it_returns(flows: Path, target: str) -> None:
    import jsonschema

    tool = asyncio.run(listed_tool(served(flows, target)))
    assert tool.output_schema is not None and tool.output_schema["type"] == "object"
    arguments = {"flows:qa": {"question": "?"}, "flows:doubler": {"x": 2}, "flows:picker": {"k": 1}}

    async def call() -> types.CallToolResult:
        from mcp import Client

        async with Client(served(flows, target)) as client:
            return await client.call_tool(tool.name, arguments[target])

    result = asyncio.run(call())
    assert not result.is_error and result.structured_content is not None
    jsonschema.validate(result.structured_content, tool.output_schema)
    assert not jsonschema.Draft202012Validator(tool.output_schema).is_valid({"nope": {}})


def test_kaizen_mcp_serve_over_http_with_headers(flows: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "kaizen", "mcp", "serve", "flows:qa"]
    command += ["--transport", "http", "--port", str(port)]
    process = subprocess.Popen(
        command, cwd=flows, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for_port(port, process)
        url = f"http://127.0.0.1:{port}/mcp"
        with MCPServer.http(url, headers={"Authorization": "Bearer t0ken-abc"}) as server:
            assert [tool.name for tool in server.list_tools()] == ["qa"]
            assert json.loads(server.call("qa", {"question": "?"}))["answer"] == "forty-two"
    finally:
        process.terminate()
        process.wait(10)


def test_kaizen_mcp_serve_explains_a_bad_target(flows: Path) -> None:
    from typer.testing import CliRunner

    from kaizen.cli import app

    cwd = os.getcwd()
    os.chdir(flows)
    try:
        outcome = CliRunner().invoke(app, ["mcp", "serve", "flows:double"])
    finally:
        os.chdir(cwd)
    assert outcome.exit_code == 2
    assert "takes an Agent, a Workflow" in outcome.output


# -- an agent using MCP tools through the reason-act loop ---------------------------------------


def test_an_agent_calls_an_mcp_tool_through_its_loop(memory: MCPServer) -> None:
    import kaizen
    from kaizen.testing import ScriptedModel

    model = ScriptedModel([ScriptedModel.tool_call("add", {"a": 20, "b": 22}), {"answer": "42"}])
    agent = kaizen.create_agent(
        "adder", signature="question -> answer", config={"model": model}, tools=[memory]
    )
    result = agent.execute(question="What is 20 + 22?")
    assert result.answer == "42" and result.stop_reason == "completed"
    [call] = result.tool_calls
    assert (call.name, call.arguments, call.output, call.error) == (
        "add",
        {"a": 20, "b": 22},
        "42",
        None,
    )
    assert model.calls[1].messages[-1]["content"] == "42"  # the MCP result, as the model read it
    assert "add" in model.calls[0].tools


# -- helpers ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[str], limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = process.stderr.read() if process.stderr else ""
            raise AssertionError(f"the server exited: {error}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listened on port {port} within {limit}s")
