"""LocalRuntime: results, parameters, policies, failure handling, skips, events, budget, context."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import threading
import time
from typing import Any

import pytest

from kaizen.errors import BudgetExceededError, NodeExecutionError, ParameterError
from kaizen.nodes import MergeNode, SwitchNode
from kaizen.runtime import (
    Budget,
    EventKind,
    LocalRuntime,
    NodeStatus,
    RunEvent,
    RunStatus,
    Usage,
    current_node_context,
)
from kaizen.workflow import Workflow, WorkflowBuilder


def chain_workflow() -> Workflow:
    def add_one(x: int) -> int:
        return x + 1

    def double(result: int) -> int:
        return result * 2

    wb = WorkflowBuilder("chain")
    wb.add_node(add_one, "inc")
    wb.add_node(double, "dbl")
    wb.add_connection("inc", "dbl")
    return wb.build()


def test_execute_returns_results_run_id_and_record() -> None:
    rt = LocalRuntime()
    results, run_id = rt.execute(chain_workflow(), {"inc": {"x": 4}})
    assert results == {"inc": {"result": 5}, "dbl": {"result": 10}}
    record = rt.get_record(run_id)
    assert record is rt.last_record
    assert record.status is RunStatus.COMPLETED
    assert [n.status for n in record.nodes.values()] == [NodeStatus.COMPLETED] * 2
    inc, dbl = record.nodes["inc"], record.nodes["dbl"]
    assert inc.attempts == dbl.attempts == 1
    assert inc.finished is not None and dbl.started is not None
    assert inc.finished <= dbl.started


def test_execute_with_record_and_explicit_run_id() -> None:
    with LocalRuntime() as rt:
        results, record = rt.execute_with_record(chain_workflow(), {"x": 1}, run_id="r1")
    assert record.run_id == "r1" and results["dbl"] == {"result": 4}
    assert rt.get_record("r1") is record
    with pytest.raises(KeyError, match="no run 'nope'"):
        rt.get_record("nope")


def test_workflow_is_reusable_and_safe_to_run_from_several_threads() -> None:
    wf = chain_workflow()
    rt = LocalRuntime()
    outcomes: dict[int, Any] = {}

    def worker(k: int) -> None:
        outcomes[k] = rt.execute(wf, {"x": k})[0]["dbl"]["result"]

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes == {k: (k + 1) * 2 for k in range(8)}


# -- parameters -----------------------------------------------------------------------------


def two_readers() -> WorkflowBuilder:
    def shout(text: str) -> str:
        return text.upper()

    def count(text: str, scale: int = 1) -> int:
        return len(text) * scale

    wb = WorkflowBuilder()
    wb.add_node(shout, "shout")
    wb.add_node(count, "count")
    return wb


def test_top_level_parameter_goes_to_every_unconnected_port_of_that_name() -> None:
    results, _ = LocalRuntime().execute(two_readers().build(), {"text": "abc"})
    assert results == {"shout": {"result": "ABC"}, "count": {"result": 3}}


def test_node_parameter_overrides_top_level_one() -> None:
    params = {"text": "abc", "count": {"text": "hello", "scale": 2}}
    results, _ = LocalRuntime().execute(two_readers().build(), params)
    assert results == {"shout": {"result": "ABC"}, "count": {"result": 10}}


def test_unused_parameter_is_an_error_naming_it() -> None:
    with pytest.raises(ParameterError, match="'colour'"):
        LocalRuntime().execute(two_readers().build(), {"text": "a", "colour": "red"})
    with pytest.raises(ParameterError, match=r"count\.nope"):
        LocalRuntime().execute(two_readers().build(), {"text": "a", "count": {"nope": 1}})


def test_missing_inputs_are_all_listed_before_anything_runs() -> None:
    ran: list[str] = []

    def first(a: int) -> int:
        ran.append("first")
        return a

    def second(b: int, c: int) -> int:
        ran.append("second")
        return b + c

    wb = WorkflowBuilder()
    wb.add_node(first, "first")
    wb.add_node(second, "second")
    with pytest.raises(ParameterError) as info:
        LocalRuntime().execute(wb.build(), {"second": {"b": 1}})
    assert "first.a" in str(info.value) and "second.c" in str(info.value)
    assert ran == []


def test_parameter_of_the_wrong_type_is_reported() -> None:
    with pytest.raises(ParameterError, match=r"count\.scale expects int"):
        LocalRuntime().execute(two_readers().build(), {"text": "a", "count": {"scale": "x"}})


def test_parameter_for_a_connected_input_is_refused() -> None:
    with pytest.raises(ParameterError, match="connection already feeds"):
        LocalRuntime().execute(chain_workflow(), {"x": 1, "dbl": {"result": 3}})


# -- eager, concurrent scheduling ------------------------------------------------------------


def test_independent_sync_nodes_overlap() -> None:
    wb = WorkflowBuilder()
    for i in range(4):
        wb.add_node(lambda: time.sleep(0.2), f"s{i}")
    _, record = LocalRuntime().execute_with_record(wb.build())
    starts = [n.started for n in record.nodes.values()]
    ends = [n.finished for n in record.nodes.values()]
    assert max(s for s in starts if s) < min(e for e in ends if e)  # all ran at once


def test_fast_branch_does_not_wait_for_slow_sibling() -> None:
    async def slow() -> int:
        await asyncio.sleep(0.6)
        return 1

    def fast() -> int:
        return 2

    def after(result: int) -> int:
        return result + 1

    wb = WorkflowBuilder()
    wb.add_node(slow, "slow")
    wb.add_node(fast, "fast")
    wb.add_node(after, "after1")
    wb.add_node(after, "after2")
    wb.add_connection("fast", "after1")
    wb.add_connection("after1", "after2")
    _, record = LocalRuntime().execute_with_record(wb.build())
    slow_end = record.nodes["slow"].finished
    assert slow_end is not None
    assert record.nodes["after2"].finished < slow_end  # type: ignore[operator]


def test_max_concurrency_bounds_running_nodes() -> None:
    lock = threading.Lock()
    running = [0]
    peak = [0]

    def busy() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1

    wb = WorkflowBuilder()
    for i in range(6):
        wb.add_node(busy, f"b{i}")
    LocalRuntime(max_concurrency=2).execute(wb.build())
    assert peak[0] == 2


def test_max_concurrency_is_one_bound_for_sync_and_async_nodes_together() -> None:
    lock = threading.Lock()
    running = [0]
    peak = [0]

    def enter() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])

    def leave() -> None:
        with lock:
            running[0] -= 1

    def busy_sync() -> None:
        enter()
        time.sleep(0.03)
        leave()

    async def busy_async() -> None:
        enter()
        await asyncio.sleep(0.03)
        leave()

    wb = WorkflowBuilder()
    for i in range(5):
        wb.add_node(busy_sync, f"s{i}")
        wb.add_node(busy_async, f"a{i}")
    for run in (
        lambda rt: rt.execute(wb.build()),
        lambda rt: asyncio.run(rt.execute_async(wb.build())),
    ):
        peak[0] = 0
        run(LocalRuntime(max_concurrency=3))
        assert peak[0] == 3


def test_queued_sync_nodes_start_when_a_slot_frees_and_record_that_time() -> None:
    def nap() -> None:
        time.sleep(0.03)

    wb = WorkflowBuilder()
    for i in range(4):
        wb.add_node(nap, f"n{i}")
    events: list[RunEvent] = []
    _, record = LocalRuntime(max_concurrency=1).execute_with_record(
        wb.build(), on_event=events.append
    )
    spans = sorted((n.started or 0.0, n.finished or 0.0) for n in record.nodes.values())
    for (_, finished), (started, _) in itertools.pairwise(spans):
        assert started >= finished  # one at a time, each started when it really began
    kinds = [(e.kind, e.node_id) for e in events]
    for i in range(4):
        assert kinds.index((EventKind.NODE_STARTED, f"n{i}")) < kinds.index(
            (EventKind.NODE_FINISHED, f"n{i}")
        )


def test_fail_fast_never_starts_queued_sync_nodes() -> None:
    ran: list[str] = []

    def boom() -> None:
        time.sleep(0.02)
        raise RuntimeError("boom")

    def work() -> None:
        context = current_node_context()
        assert context is not None
        ran.append(context.node_id)
        time.sleep(0.05)

    wb = WorkflowBuilder()
    wb.add_node(boom, "boom")
    for i in range(8):
        wb.add_node(work, f"w{i}")
    events: list[RunEvent] = []
    rt = LocalRuntime(max_concurrency=2)
    with pytest.raises(NodeExecutionError):
        rt.execute(wb.build(), on_event=events.append)
    time.sleep(0.3)  # long enough for any queued node to have started by now
    record = rt.last_record
    assert record is not None
    started = {e.node_id for e in events if e.kind is EventKind.NODE_STARTED}
    assert len(ran) < 8 and set(ran) <= started | {"boom"}
    for i in range(8):
        status = record.nodes[f"w{i}"].status
        if f"w{i}" in ran:
            assert status in (NodeStatus.COMPLETED, NodeStatus.CANCELLED)
        else:
            assert status is NodeStatus.PENDING


# -- policies ------------------------------------------------------------------------------


def test_sync_timeout_fails_the_attempt_and_names_node_and_attempt() -> None:
    finished = threading.Event()

    def sleepy() -> None:
        time.sleep(2)
        finished.set()

    wb = WorkflowBuilder()
    wb.add_node(sleepy, "sleepy", timeout=0.1)
    with pytest.raises(NodeExecutionError) as info:
        LocalRuntime().execute(wb.build())
    assert not finished.is_set()  # abandoned, not waited for
    assert info.value.node_id == "sleepy" and info.value.attempt == 1
    assert isinstance(info.value.__cause__, TimeoutError)


def test_async_timeout_with_retries_counts_attempts() -> None:
    async def hang() -> None:
        await asyncio.sleep(5)

    wb = WorkflowBuilder()
    wb.add_node(hang, "hang", timeout=0.05, retries=2)
    rt = LocalRuntime()
    with pytest.raises(NodeExecutionError) as info:
        rt.execute(wb.build())
    assert info.value.attempt == 3
    record = rt.last_record
    assert record is not None and record.nodes["hang"].attempts == 3
    assert record.nodes["hang"].status is NodeStatus.FAILED


def test_retries_until_success_emit_retrying_events() -> None:
    calls = [0]

    def flaky() -> str:
        calls[0] += 1
        if calls[0] < 3:
            raise ConnectionError(f"flake {calls[0]}")
        return "ok"

    events: list[RunEvent] = []
    wb = WorkflowBuilder()
    wb.add_node(flaky, "flaky", retries=3)
    results, record = LocalRuntime().execute_with_record(wb.build(), on_event=events.append)
    assert results == {"flaky": {"result": "ok"}}
    assert record.nodes["flaky"].attempts == 3
    retrying = [e for e in events if e.kind is EventKind.NODE_RETRYING]
    assert [e.data["attempt"] for e in retrying] == [1, 2]
    assert "flake 1" in retrying[0].data["error"]


def test_failure_chains_original_exception() -> None:
    def boom() -> None:
        raise ValueError("bad input")

    wb = WorkflowBuilder()
    wb.add_node(boom, "boom", retries=1)
    with pytest.raises(NodeExecutionError, match="'boom' failed on attempt 2") as info:
        LocalRuntime().execute(wb.build())
    assert isinstance(info.value.__cause__, ValueError)


def test_node_returning_a_non_dict_fails_clearly() -> None:
    from kaizen.nodes import Node, Port

    class Bad(Node):
        output_ports = (Port("out"),)

        def run(self, **inputs: Any) -> dict[str, Any]:
            return 42  # type: ignore[return-value]

    wb = WorkflowBuilder()
    wb.add_node_instance(Bad("bad"))
    with pytest.raises(NodeExecutionError, match="must return a dict"):
        LocalRuntime().execute(wb.build())


# -- failure policies ------------------------------------------------------------------------


def failing_graph() -> Workflow:
    def boom() -> int:
        time.sleep(0.05)
        raise RuntimeError("boom")

    def after(result: int) -> int:
        return result

    async def slow_async() -> int:
        await asyncio.sleep(3)
        return 1

    def independent() -> int:
        return 7

    def independent_next(result: int) -> int:
        time.sleep(0.2)
        return result + 1

    wb = WorkflowBuilder("failing")
    wb.add_node(boom, "boom")
    wb.add_node(after, "after")
    wb.add_node(slow_async, "slow_async")
    wb.add_node(independent, "ind")
    wb.add_node(independent_next, "ind_next")
    wb.add_connection("boom", "after")
    wb.add_connection("ind", "ind_next")
    return wb.build()


def test_fail_fast_cancels_what_runs_and_records_everything() -> None:
    rt = LocalRuntime()
    with pytest.raises(NodeExecutionError) as info:
        rt.execute(failing_graph())
    assert info.value.node_id == "boom"
    record = rt.last_record
    assert record is not None and record.status is RunStatus.FAILED
    statuses = {k: n.status for k, n in record.nodes.items()}
    assert statuses["boom"] is NodeStatus.FAILED
    assert statuses["slow_async"] is NodeStatus.CANCELLED
    assert statuses["ind_next"] is NodeStatus.CANCELLED  # a sync node: abandoned
    assert statuses["after"] is NodeStatus.PENDING  # never ran
    assert statuses["ind"] is NodeStatus.COMPLETED
    assert "never ran" in "\n".join(info.value.__notes__)
    assert record.by_status("cancelled") == record.by_status(NodeStatus.CANCELLED)
    assert set(record.by_status("cancelled")) == {"slow_async", "ind_next"}


def test_continue_skips_dependants_and_finishes_independent_branches() -> None:
    def slow() -> int:
        time.sleep(0.1)
        return 1

    wb = WorkflowBuilder()
    wb.add_node(lambda: 1 / 0, "zero")
    wb.add_node(lambda result: result, "child")
    wb.add_node(lambda result: result, "grandchild")
    wb.add_node(slow, "other")
    wb.add_connection("zero", "child")
    wb.add_connection("child", "grandchild")
    rt = LocalRuntime(failure_policy="continue")
    results, run_id = rt.execute(wb.build())
    assert results == {"other": {"result": 1}}
    record = rt.get_record(run_id)
    assert record.status is RunStatus.FAILED
    assert record.nodes["zero"].status is NodeStatus.FAILED
    assert "ZeroDivisionError" in (record.nodes["zero"].error or "")
    assert record.nodes["child"].status is NodeStatus.SKIPPED
    assert "'zero' failed" in (record.nodes["child"].skip_reason or "")
    assert record.nodes["grandchild"].status is NodeStatus.SKIPPED
    errors = rt.get_errors(run_id)
    assert list(errors) == ["zero"] and isinstance(errors["zero"].__cause__, ZeroDivisionError)


# -- routing: switch and merge -----------------------------------------------------------


def routed(value: int) -> Workflow:
    wb = WorkflowBuilder()
    wb.add_node(lambda: value, "source")
    wb.add_node_instance(SwitchNode("switch", {"condition": lambda v: v > 0}))
    wb.add_node(lambda value: f"positive {value}", "pos")
    wb.add_node(lambda result: result + "!", "pos_loud")
    wb.add_node(lambda value: f"non-positive {value}", "neg")
    wb.add_node_instance(MergeNode("merge", {"inputs": ["a", "b"]}))
    wb.add_connection("source", "result", "switch", "value")
    wb.add_connection("switch", "true", "pos", "value")
    wb.add_connection("pos", "pos_loud")
    wb.add_connection("switch", "false", "neg", "value")
    wb.add_connection("pos_loud", "result", "merge", "a")
    wb.add_connection("neg", "result", "merge", "b")
    return wb.build()


def test_switch_skips_untaken_branch_recursively_and_merge_takes_the_other() -> None:
    results, record = LocalRuntime().execute_with_record(routed(5))
    assert results["merge"] == {"value": "positive 5!"}
    assert record.status is RunStatus.COMPLETED
    neg = record.nodes["neg"]
    assert neg.status is NodeStatus.SKIPPED and "switch.false" in (neg.skip_reason or "")

    results, record = LocalRuntime().execute_with_record(routed(-1))
    assert results["merge"] == {"value": "non-positive -1"}
    assert record.nodes["pos"].status is NodeStatus.SKIPPED
    assert record.nodes["pos_loud"].status is NodeStatus.SKIPPED
    assert "'pos' was skipped" in (record.nodes["pos_loud"].skip_reason or "")


def test_merge_with_nothing_arriving_is_skipped() -> None:
    wb = WorkflowBuilder()
    wb.add_node_instance(SwitchNode("switch", {"branches": ["a", "b", "c"]}))
    wb.add_node_instance(MergeNode("merge", {"inputs": ["a", "b"]}))
    wb.add_connection("switch", "a", "merge", "a")
    wb.add_connection("switch", "b", "merge", "b")
    results, record = LocalRuntime().execute_with_record(
        wb.build(), {"switch": {"value": 1, "branch": "c"}}
    )
    assert "merge" not in results
    assert record.nodes["merge"].status is NodeStatus.SKIPPED
    assert "no input arrived" in (record.nodes["merge"].skip_reason or "")


# -- events ----------------------------------------------------------------------------------


def test_events_stream_in_order_and_a_broken_subscriber_does_not_break_the_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rt = LocalRuntime()
    seen: list[RunEvent] = []
    rt.subscribe(seen.append)

    def broken(event: RunEvent) -> None:
        raise RuntimeError("subscriber bug")

    unsubscribe = rt.subscribe(broken)
    results, run_id = rt.execute(chain_workflow(), {"x": 1})
    assert results["dbl"] == {"result": 4}
    assert "subscriber bug" in caplog.text
    kinds = [(e.kind, e.node_id) for e in seen]
    assert kinds == [
        (EventKind.RUN_STARTED, None),
        (EventKind.NODE_STARTED, "inc"),
        (EventKind.NODE_FINISHED, "inc"),
        (EventKind.NODE_STARTED, "dbl"),
        (EventKind.NODE_FINISHED, "dbl"),
        (EventKind.RUN_FINISHED, None),
    ]
    assert all(e.run_id == run_id for e in seen)
    assert seen[-1].data["status"] == "completed"
    unsubscribe()
    seen.clear()
    rt.execute(chain_workflow(), {"x": 1})
    assert len(seen) == 6


# -- context and budget ----------------------------------------------------------------------

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def test_node_context_is_visible_in_sync_and_async_nodes_with_caller_context() -> None:
    def sync_probe() -> str:
        ctx = current_node_context()
        assert ctx is not None
        return f"{ctx.node_id}/{ctx.attempt}/{request_id.get()}/{threading.current_thread().name}"

    async def async_probe() -> str:
        ctx = current_node_context()
        assert ctx is not None
        return f"{ctx.node_id}/{ctx.run_id}/{request_id.get()}"

    wb = WorkflowBuilder()
    wb.add_node(sync_probe, "s1")
    wb.add_node(sync_probe, "s2")
    wb.add_node(async_probe, "a")
    request_id.set("req-9")
    results, _ = LocalRuntime().execute(wb.build(), run_id="run-7")
    assert results["a"] == {"result": "a/run-7/req-9"}
    assert results["s1"]["result"].startswith("s1/1/req-9/kaizen-worker")
    assert current_node_context() is None


def budget_graph() -> Workflow:
    def model_call(prompt: str) -> str:
        ctx = current_node_context()
        assert ctx is not None
        ctx.check_budget()
        ctx.add_usage(Usage(prompt_tokens=40, completion_tokens=20, cost=0.01, calls=1))
        return prompt + "."

    wb = WorkflowBuilder()
    wb.add_node(model_call, "m1")
    wb.add_node(lambda result: result, "m2", {})
    wb.add_node(model_call, "m3")
    wb.add_node(lambda result: result, "after")
    wb.add_connection("m1", "result", "m3", "prompt")
    wb.add_connection("m3", "after")
    wb.add_connection("m1", "m2")
    return wb.build()


def test_usage_is_recorded_and_an_exhausted_budget_skips_model_nodes() -> None:
    budget = Budget(max_tokens=100)
    rt = LocalRuntime(budget=budget, failure_policy="continue")
    results, record = rt.execute_with_record(budget_graph(), {"prompt": "hi"})
    assert results["m3"] == {"result": "hi.."}
    assert record.usage.total_tokens == 120 and record.nodes["m1"].usage.calls == 1
    assert budget.used.total_tokens == 120
    # the shared budget is now exhausted: the next run's model nodes are skipped, not failed
    results, record = rt.execute_with_record(budget_graph(), {"prompt": "hi"})
    assert results == {}
    m1 = record.nodes["m1"]
    assert m1.status is NodeStatus.SKIPPED and (m1.skip_reason or "").startswith("budget exceeded")
    assert record.nodes["after"].status is NodeStatus.SKIPPED
    assert record.status is RunStatus.FAILED
    with pytest.raises(BudgetExceededError):
        budget.check()


def test_under_fail_fast_an_exhausted_budget_stops_the_run_and_raises_with_what_was_done() -> None:
    budget = Budget(max_tokens=60)  # enough for m1 only
    rt = LocalRuntime(budget=budget)
    with pytest.raises(BudgetExceededError) as info:
        rt.execute(budget_graph(), {"prompt": "hi"}, run_id="over")
    error = info.value
    assert error.run_id == "over" and error.node_id == "m3"
    assert error.results["m1"] == {"result": "hi."}  # nothing already done is lost
    assert "m3" not in error.results and "after" not in error.results
    assert "run 'over'" in "\n".join(error.__notes__)
    record = rt.get_record("over")
    assert record.status is RunStatus.FAILED
    assert record.nodes["m3"].status is NodeStatus.SKIPPED
    assert (record.nodes["m3"].skip_reason or "").startswith("budget exceeded")
    assert record.nodes["after"].status is NodeStatus.SKIPPED


# -- async entry points and cancellation -------------------------------------------------------


def test_execute_async_and_execute_inside_a_loop() -> None:
    rt = LocalRuntime()
    wf = chain_workflow()

    async def main() -> None:
        results, _ = await rt.execute_async(wf, {"x": 2})
        assert results["dbl"] == {"result": 6}
        # as in a notebook cell: the sync entry point works inside a running loop too
        results, _ = rt.execute(wf, {"x": 3})
        assert results["dbl"] == {"result": 8}

    asyncio.run(main())


def test_cancelling_a_run_records_what_finished_and_reraises() -> None:
    async def slow() -> int:
        await asyncio.sleep(5)
        return 1

    wb = WorkflowBuilder()
    wb.add_node(lambda: 1, "quick")
    wb.add_node(slow, "slow1")
    wb.add_node(slow, "slow2")
    rt = LocalRuntime()

    async def main() -> None:
        events: list[RunEvent] = []
        task = asyncio.create_task(rt.execute_async(wb.build(), on_event=events.append))
        wanted = {(EventKind.NODE_FINISHED, "quick"), (EventKind.NODE_STARTED, "slow1")}
        while not wanted <= {(e.kind, e.node_id) for e in events}:  # quick done, slow1 waiting
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    record = rt.last_record
    assert record is not None and record.status is RunStatus.CANCELLED
    assert record.nodes["quick"].status is NodeStatus.COMPLETED
    assert record.nodes["slow1"].status is NodeStatus.CANCELLED


def test_nested_execute_from_a_node() -> None:
    inner = chain_workflow()
    rt = LocalRuntime()

    def outer(x: int) -> int:
        return rt.execute(inner, {"x": x})[0]["dbl"]["result"]

    wb = WorkflowBuilder()
    wb.add_node(outer, "outer")
    results, _ = rt.execute(wb.build(), {"x": 3})
    assert results == {"outer": {"result": 8}}


def test_nested_runs_from_saturated_workers_do_not_deadlock() -> None:
    inner = two_readers().build()  # two independent nodes: they need worker threads
    rt = LocalRuntime(max_concurrency=2)

    def outer(x: str) -> int:
        time.sleep(0.05)  # keep both workers busy at once
        return rt.execute(inner, {"text": x})[0]["count"]["result"]

    wb = WorkflowBuilder()
    for i in range(2):
        wb.add_node(outer, f"outer{i}")
    results, _ = rt.execute(wb.build(), {"x": "abc"})
    assert results == {"outer0": {"result": 3}, "outer1": {"result": 3}}


def test_budget_reports_usage_and_refuses_bad_limits() -> None:
    budget = Budget(max_cost=0.05)
    assert budget.exceeded() is None and budget.remaining_cost == 0.05
    budget.charge(Usage(prompt_tokens=10, cost=0.06, calls=1))
    assert "max_cost" in (budget.exceeded() or "")
    with pytest.raises(BudgetExceededError) as info:
        budget.check()
    assert info.value.limit == "max_cost" and info.value.ceiling == 0.05
    with pytest.raises(ValueError):
        Budget(max_tokens=-1)


CTRL_C_SCRIPT = """
import asyncio, os, signal, threading, time
from kaizen.workflow import WorkflowBuilder
from kaizen.runtime import LocalRuntime

async def slow():
    await asyncio.sleep(10)

def slow_sync():
    time.sleep(10)

wb = WorkflowBuilder()
wb.add_node(lambda: 1, "quick")
wb.add_node(slow, "slow")
wb.add_node(slow_sync, "slow_sync")
wf = wb.build()
rt = LocalRuntime()
threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
try:
    rt.execute(wf)
except KeyboardInterrupt:
    r = rt.last_record
    print(r.status, *(f"{k}={n.status}" for k, n in r.nodes.items()))
"""


@pytest.mark.slow
def test_ctrl_c_leaves_a_record_of_what_finished() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", CTRL_C_SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert out.stdout.split() == [
        "cancelled",
        "quick=completed",
        "slow=cancelled",
        "slow_sync=cancelled",
    ], out.stderr


def test_parameter_type_check_lets_coercible_values_through() -> None:
    import enum
    from typing import Literal

    import pydantic

    from kaizen.workflow.parameters import value_fits

    class Colour(enum.Enum):
        RED = "red"

    class Point(pydantic.BaseModel):
        x: int

    assert value_fits(3, float) and value_fits((1, 2), list[int]) and value_fits(None, int | None)
    assert value_fits({"x": 1}, Point) and value_fits("red", Colour)
    assert value_fits("a", Literal["a", "b"]) and not value_fits("c", Literal["a", "b"])
    assert not value_fits("3", int) and not value_fits(3, str) and not value_fits("x", Colour)


def test_a_node_can_explain_why_it_produced_nothing() -> None:
    from kaizen.nodes import Node, Port

    class Gate(Node):
        output_ports = (Port("out"),)

        def run(self, **inputs: Any) -> dict[str, Any]:
            return {}

        def unproduced_reason(self, outputs: dict[str, Any]) -> str:
            return "the gate is closed"

    wb = WorkflowBuilder()
    wb.add_node_instance(Gate("gate"))
    wb.add_node(lambda out: out, "after")
    wb.add_connection("gate", "after")
    _, record = LocalRuntime().execute_with_record(wb.build())
    reason = record.nodes["after"].skip_reason or ""
    assert "gate.out was not produced" in reason and reason.endswith("the gate is closed")
    assert record.status is RunStatus.COMPLETED


def test_run_is_what_every_entry_point_does() -> None:
    """`run` is the one way a run happens: awaited, it gives what `execute_with_record` gives."""
    runtime = LocalRuntime()
    workflow = chain_workflow()
    direct, record = asyncio.run(runtime.run(workflow, {"inc": {"x": 1}}, run_id="direct"))
    results, via_execute = runtime.execute_with_record(workflow, {"inc": {"x": 1}})
    assert direct == results == {"inc": {"result": 2}, "dbl": {"result": 4}}
    assert record.run_id == "direct" and runtime.get_record("direct") is record
    assert record.status is via_execute.status is RunStatus.COMPLETED
    with pytest.raises(TypeError, match="run_id of the earlier run"):
        asyncio.run(runtime.run(workflow, resume=True))
    with pytest.raises(TypeError, match="no parameters"):
        asyncio.run(runtime.run(workflow, {"inc": {"x": 1}}, run_id="direct", replay=True))


def test_retries_wait_the_backoff_doubling_each_time() -> None:
    from kaizen.nodes import ExecutionPolicy, FunctionNode

    failures = [0]

    def flaky() -> str:
        failures[0] += 1
        if failures[0] < 4:
            raise ConnectionError(f"flake {failures[0]}")
        return "ok"

    events: list[RunEvent] = []
    wb = WorkflowBuilder()
    policy = ExecutionPolicy(retries=3, backoff=0.01)
    wb.add_node_instance(FunctionNode("flaky", {"function": flaky}, policy=policy))
    results, record = LocalRuntime().execute_with_record(wb.build(), on_event=events.append)
    assert results == {"flaky": {"result": "ok"}}
    waits = [e.data["wait"] for e in events if e.kind is EventKind.NODE_RETRYING]
    assert waits == pytest.approx([0.01, 0.02, 0.04])
    assert record.nodes["flaky"].attempts == 4


def test_an_error_outside_retry_on_is_not_retried() -> None:
    from kaizen.nodes import ExecutionPolicy, FunctionNode

    calls = [0]

    def picky() -> str:
        calls[0] += 1
        raise ValueError("not a connection problem")

    wb = WorkflowBuilder()
    policy = ExecutionPolicy(retries=3, retry_on=(ConnectionError,))
    wb.add_node_instance(FunctionNode("picky", {"function": picky}, policy=policy))
    with pytest.raises(NodeExecutionError, match="'picky' failed on attempt 1"):
        LocalRuntime().execute(wb.build())
    assert calls == [1]
