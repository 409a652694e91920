"""litellm's own logging machinery stays out of Kaizen runs (and back on when the user wants it).

litellm hands every call's success/failure logging to one process-wide worker bound to one event
loop; Kaizen runs coroutines on a loop per thread, so with that worker on, agent runs print
"cannot reuse already awaited coroutine" and "Task was destroyed but it is pending!" tracebacks.
These tests run the paths that used to do so in a fresh interpreter and read its stderr.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from kaizen.llm.litellm_adapter import litellm_logging_off, litellm_logging_wanted, load_litellm

# Every way Kaizen code reaches litellm from several event loops: agents on threads (a loop per
# thread), asyncio.run per call, an agent run from inside a running loop (a nested thread), sync
# calls, failures and retries, over real HTTP (through litellm and through the fast path, whose
# pooled connections must close quietly with each loop) and through the scripted model's litellm
# provider.
SCRIPT = textwrap.dedent(
    """
    import asyncio, threading
    from kaizen.agents import Agent
    from kaizen.errors import ModelError
    from kaizen.testing.fault_server import FaultServer
    from kaizen.llm import acomplete, complete
    from kaizen.testing import ScriptedModel

    MESSAGES = [{"role": "user", "content": "hi"}]
    scripted = ScriptedModel({"": {"answer": "x"}})

    def on_threads(agent, runs):
        threads = [threading.Thread(target=lambda: [agent.execute(question="q")
                                                    for _ in range(runs)]) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    async def nested(agent):
        agent.execute(question="q")
        await agent.execute_async(question="q")

    local = Agent("scripted", signature="question -> answer",
                  config={"model": scripted, "transport": "litellm"})
    on_threads(local, 4)
    asyncio.run(nested(local))
    for _ in range(3):
        asyncio.run(acomplete(MESSAGES, model=scripted, transport="litellm"))
        complete(MESSAGES, model=scripted, transport="litellm")

    with FaultServer() as server:
        for transport in ("litellm", "openai-compatible"):
            http = {"model": "openai/kaizen-test", "api_base": server.base_url,
                    "api_key": "test", "transport": transport}
            remote = Agent("remote", signature="question -> answer", config=http)
            on_threads(remote, 3)
            asyncio.run(nested(remote))
            server.inject("500", "429")
            asyncio.run(acomplete(MESSAGES, backoff=0.01, **http))
            server.inject("401")
            try:
                complete(MESSAGES, **http)
            except ModelError:
                pass
            asyncio.run(acomplete(MESSAGES, **http))
    print("finished")
    """
)

NOISE = (
    "Traceback",
    "LoggingWorker",
    "cannot reuse already awaited coroutine",
    "Task was destroyed",
    "was never awaited",
    "Event loop is closed",
    "LiteLLM:",
)


def test_agent_and_complete_runs_print_nothing_to_stderr() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "finished"
    found = [marker for marker in NOISE if marker in done.stderr]
    assert not found, f"stderr has {found}:\n{done.stderr[-3000:]}"


def test_user_registered_litellm_callbacks_still_fire() -> None:
    code = textwrap.dedent(
        """
        import asyncio, time
        from kaizen.llm.litellm_adapter import load_litellm
        from kaizen.llm import acomplete, complete
        from kaizen.testing import ScriptedModel

        litellm = load_litellm()
        seen = []
        litellm.success_callback = [lambda kwargs, response, start, end: seen.append("sync")]

        class Recorder(litellm.integrations.custom_logger.CustomLogger):
            async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
                seen.append("async")

        litellm.callbacks = [Recorder()]
        model = ScriptedModel({"": "ok"})
        complete([{"role": "user", "content": "hi"}], model=model, transport="litellm")

        async def main():
            await acomplete([{"role": "user", "content": "hi"}], model=model, transport="litellm")
            deadline = time.monotonic() + 10  # the logging worker runs callbacks in the background
            while "async" not in seen and time.monotonic() < deadline:
                await asyncio.sleep(0.05)

        asyncio.run(main())
        deadline = time.monotonic() + 10
        while len(set(seen)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        print(sorted(set(seen)))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['async', 'sync']", done.stderr


def test_logging_is_off_only_while_the_user_wants_none() -> None:
    litellm = load_litellm()
    from litellm._internal_context import is_internal_call

    assert not litellm_logging_wanted(litellm)
    with litellm_logging_off():
        assert is_internal_call.get() is True
    assert is_internal_call.get() is False

    saved = litellm.success_callback
    litellm.success_callback = ["my_logger"]
    try:
        assert litellm_logging_wanted(litellm)
        with litellm_logging_off():
            assert is_internal_call.get() is False
    finally:
        litellm.success_callback = saved
