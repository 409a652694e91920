"""`RayRuntime` on one local Ray cluster (2 CPUs, started once for the module): the same results,
statuses, skip reasons and record as `LocalRuntime`; nodes run in other processes; agents travel;
failures, timeouts, killed workers and values that cannot be pickled are reported as locally."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kaizen
from kaizen import (
    Budget,
    ExecutionPolicy,
    LocalRuntime,
    NodeExecutionError,
    NodeRetryHook,
    NotPicklableError,
    RayRuntime,
    RunRecord,
    WorkflowBuilder,
)
from kaizen.nodes import Node, Port
from kaizen.patterns import ConsensusResult, create_consensus_workflow
from kaizen.runtime.stream import Done
from kaizen.testing import ScriptedModel
from kaizen.workflow import Workflow

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a local Ray cluster

# pytest imports this module under a name Ray's workers cannot import: send its nodes by value
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="session", autouse=True)
def cluster() -> Iterator[None]:
    """One local cluster for every test here; shut down at the end."""
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def on_ray() -> Iterator[RayRuntime]:
    with RayRuntime(failure_policy="continue", num_cpus=0.25) as runtime:
        yield runtime


# -- random DAGs: the same outcome as LocalRuntime -------------------------------------------------

Dag = tuple[int, list[list[int]], list[str], list[bool]]


@st.composite
def dags(draw: st.DrawFn, max_nodes: int = 8) -> Dag:
    """n nodes; node i's sources a subset of 0..i-1; each ok, failing or silent; sync or async."""
    n = draw(st.integers(1, max_nodes))
    preds = [
        sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else [] for i in range(n)
    ]
    kinds = draw(
        st.lists(st.sampled_from(["ok", "ok", "ok", "fail", "silent"]), min_size=n, max_size=n)
    )
    is_async = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return n, preds, kinds, is_async


class Cell(Node):
    """Combines its inputs; or fails; or produces nothing (its dependants are skipped)."""

    def __init__(self, index: int, preds: list[int], kind: str) -> None:
        self.index, self.preds, self.kind = index, preds, kind
        super().__init__(f"n{index}")

    def make_ports(self) -> tuple[list[Port], list[Port]]:
        return [Port(f"in{p}", int) for p in self.preds], [Port("out", int), Port("pid", int)]

    def run(self, **inputs: int) -> dict[str, Any]:
        if self.kind == "fail":
            raise ValueError(f"n{self.index} was told to fail")
        if self.kind == "silent":
            return {"pid": os.getpid()}
        total = self.index * 31 + sum(v * (k + 2) for k, v in enumerate(sorted(inputs.values())))
        return {"out": total % 100_003, "pid": os.getpid()}


class AsyncCell(Cell):
    async def arun(self, **inputs: int) -> dict[str, Any]:
        await asyncio.sleep(0)
        return self.run(**inputs)


def build(dag: Dag) -> Workflow:
    n, preds, kinds, is_async = dag
    builder = WorkflowBuilder("random")
    for i in range(n):
        builder.add_node_instance((AsyncCell if is_async[i] else Cell)(i, preds[i], kinds[i]))
    for i in range(n):
        for p in preds[i]:
            builder.add_connection(f"n{p}", "out", f"n{i}", f"in{p}")
    return builder.build()


def outcome(results: dict[str, dict[str, Any]], record: RunRecord) -> dict[str, Any]:
    """What must not depend on the runtime: values, statuses, errors and skip reasons. (Which
    of several failed, silent or skipped sources a skip reason names depends on which settled
    first, locally too: the comparison keeps the reason's form, "input ... is missing", and
    `check_skip_reasons` checks that the source it names really produced nothing.)"""
    values = {
        node: {k: v for k, v in ports.items() if k != "pid"} for node, ports in results.items()
    }
    nodes = {
        n.node_id: (
            str(n.status),
            n.attempts,
            n.error,
            re.sub(
                r"n\d+",
                "n?",
                re.sub(r"input '\w+' is missing: .*", "input is missing", n.skip_reason or ""),
            ),
        )
        for n in record.nodes.values()
    }
    return {"values": values, "nodes": nodes, "status": str(record.status)}


def check_skip_reasons(dag: Dag, results: dict[str, dict[str, Any]], record: RunRecord) -> None:
    """Every skip reason names one of the node's own sources, and that source produced no
    ``out``: it failed, was skipped, or stayed silent."""
    preds = dag[1]
    for n in record.nodes.values():
        reason = n.skip_reason or ""
        if not reason.startswith("input"):
            continue
        named = re.search(r"input 'in(\d+)' is missing: '?n(\d+)", reason)
        assert named is not None, reason
        port_source, source = int(named.group(1)), int(named.group(2))
        assert port_source == source and source in preds[int(n.node_id[1:])], reason
        assert "out" not in results.get(f"n{source}", {}), reason


LOCAL = LocalRuntime(failure_policy="continue")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags())
def test_random_dags_end_as_they_do_locally(on_ray: RayRuntime, dag: Dag) -> None:
    workflow = build(dag)
    expected = outcome(*LOCAL.execute_with_record(workflow))
    results, record = on_ray.execute_with_record(workflow)
    assert outcome(results, record) == expected
    check_skip_reasons(dag, results, record)


def test_random_dag_under_execute_async_and_low_concurrency() -> None:
    dag: Dag = (6, [[], [0], [0], [1, 2], [3], [0, 4]], ["ok"] * 6, [False, True] * 3)
    workflow = build(dag)
    runtime = RayRuntime(max_concurrency=1, failure_policy="continue")
    results, run_id = asyncio.run(runtime.execute_async(workflow))
    assert outcome(results, runtime.get_record(run_id)) == outcome(
        *LOCAL.execute_with_record(workflow)
    )


# -- where nodes run -------------------------------------------------------------------------------


def test_a_node_runs_in_another_process_and_the_record_says_where(on_ray: RayRuntime) -> None:
    workflow = build((2, [[], [0]], ["ok", "ok"], [False, True]))
    results, record = on_ray.execute_with_record(workflow)
    for node in ("n0", "n1"):
        pid = results[node]["pid"]
        assert pid != os.getpid()
        worker = record.nodes[node].worker
        assert worker is not None and worker.endswith(f":{pid}")
    _, local_record = LOCAL.execute_with_record(workflow)
    assert local_record.nodes["n0"].worker is None


def test_upstream_values_reach_downstream_nodes_on_other_workers(on_ray: RayRuntime) -> None:
    chain = WorkflowBuilder("chain")
    for i in range(30):
        chain.add_node_instance(Cell(i, [i - 1] if i else [], "ok"))
        if i:
            chain.add_connection(f"n{i - 1}", "out", f"n{i}", f"in{i - 1}")
    workflow = chain.build()
    assert outcome(*on_ray.execute_with_record(workflow)) == outcome(
        *LOCAL.execute_with_record(workflow)
    )


def test_stream_ends_with_the_results_of_execute(on_ray: RayRuntime) -> None:
    workflow = build((3, [[], [0], [0, 1]], ["ok"] * 3, [True, False, True]))
    events = list(on_ray.stream_sync(workflow))
    done = events[-1]
    assert isinstance(done, Done)
    assert done.result["n2"]["out"] == LOCAL.execute(workflow)[0]["n2"]["out"]


# -- agents ----------------------------------------------------------------------------------------

ROLES = ["economist", "engineer", "ethicist"]


def vote_by_persona(messages: list[dict[str, Any]]) -> dict[str, Any]:
    persona = str(messages[0]["content"]).rsplit("\n\n", 1)[-1].split(":")[0].lower()
    answer = "No" if "ethicist" in persona else "Yes"
    return {"answer": answer, "confidence": 0.9, "rationale": f"{persona} says {answer}"}


def test_a_consensus_of_agents_runs_on_ray(on_ray: RayRuntime) -> None:
    model = ScriptedModel(vote_by_persona)
    builder = create_consensus_workflow(ROLES, "majority_vote", 0.6, model=model)
    results, record = on_ray.execute_with_record(builder.build(), {"question": "Ship it?"})
    result = results["consensus"]["result"]
    assert isinstance(result, ConsensusResult)
    assert result.reached and result.decision == "Yes"
    assert [v.agent for v in result.dissent] == ["ethicist"]
    assert record.status == "completed"
    for role in ROLES:  # each agent's model call happened in a worker, and was recorded here
        node_run = record.nodes[role]
        assert node_run.worker is not None and not node_run.worker.endswith(f":{os.getpid()}")
        assert node_run.usage.calls == 1 and node_run.usage.total_tokens > 0
        assert len(node_run.model_calls) == 1
    assert record.usage.calls == 3
    assert not model.calls  # this process's model answered nothing: the copies did


def test_a_budget_refuses_the_agent_it_would_refuse_locally() -> None:
    model = ScriptedModel({"": {"answer": "a"}})
    first = kaizen.create_agent("first", "question -> answer", config={"model": model})
    second = kaizen.create_agent("second", "answer -> final", config={"model": model})
    builder = WorkflowBuilder("budgeted")
    builder.add_agent(first, "first")
    builder.add_agent(second, "second")
    builder.add_connection("first", "answer", "second", "answer")
    workflow = builder.build()
    ends = []
    for runtime in (LocalRuntime, RayRuntime):
        budget = Budget(max_tokens=1)  # the first call uses it up
        with runtime(failure_policy="continue", budget=budget) as rt:  # closed: its actors end
            _, record = rt.execute_with_record(workflow, {"first": {"question": "q?"}})
        second_run = record.nodes["second"]
        ends.append((str(record.status), str(second_run.status), second_run.skip_reason))
        assert budget.used.calls == 1
    assert ends[0] == ends[1]
    assert ends[1][1] == "skipped" and "budget exceeded" in (ends[1][2] or "")


# -- agents on the model actors: many per process ----------------------------------------------


class Arrivals:
    """A scripted model's reply that notes, in a directory, when and in which process each call
    arrived (before its scripted latency)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def __call__(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        Path(self.directory, f"{time.time():.6f}-{os.getpid()}-{uuid.uuid4().hex}").touch()
        return {"answer": "yes", "confidence": 0.9}


def most_at_once(arrivals: list[float], latency: float) -> int:
    """The most calls waiting on the model at one moment (each waits `latency` from arriving).
    Calls run one at a time per process would give at most one per process."""
    return max(sum(a <= b < a + latency for b in arrivals) for a in arrivals)


def test_many_agents_share_the_model_actors_and_wait_on_the_model_at_once(
    tmp_path: Path,
) -> None:
    latency = 0.5
    model = ScriptedModel(Arrivals(str(tmp_path)), latency=latency)
    signature = "question -> answer: str, confidence: float"
    voters = [
        kaizen.create_agent(f"voter_{i}", signature=signature, config={"model": model})
        for i in range(40)
    ]
    workflow = create_consensus_workflow(voters, decision_criteria="majority_vote").build()
    with RayRuntime(model_actors=2) as runtime:
        results, record = runtime.execute_with_record(workflow, {"question": "Ship it?"})
    assert results["consensus"]["result"].reached
    assert record.status == "completed"
    agent_workers = {record.nodes[f"voter_{i}"].worker for i in range(40)}
    assert None not in agent_workers and len(agent_workers) <= 2  # two actor processes
    assert all(not w.endswith(f":{os.getpid()}") for w in agent_workers if w)
    calls = [name.name.split("-") for name in tmp_path.iterdir()]
    assert len(calls) == 40
    assert {f":{pid}" for _, pid, _ in calls} == {w[w.rindex(":") :] for w in agent_workers if w}
    assert most_at_once([float(t) for t, _, _ in calls], latency) >= 10


class KillsOnce:
    """A scripted model's reply that kills its process on the first call (a file marks it)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __call__(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        path = Path(self.marker)
        if not path.exists():
            path.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return {"answer": "survived"}


def test_an_actor_killed_mid_call_is_retried_and_reported(tmp_path: Path) -> None:
    marker = tmp_path / "killed"
    model = ScriptedModel(KillsOnce(str(marker)))
    builder = WorkflowBuilder("doomed")
    builder.add_agent(
        kaizen.create_agent("doomed", "question -> answer", {"model": model}), "doomed"
    )
    hook = Retries()
    with RayRuntime(model_actors=1, hooks=[hook]) as runtime:
        results, record = runtime.execute_with_record(
            builder.build(), {"doomed": {"question": "q?"}}
        )
    killed = int(marker.read_text())
    assert results["doomed"]["answer"] == "survived"
    doomed = record.nodes["doomed"]
    assert (str(doomed.status), doomed.error) == ("completed", None)
    assert doomed.worker is not None and not doomed.worker.endswith(f":{killed}")  # restarted
    # one retry for the kill; on a busy machine a retry may also reach the actor before Ray has
    # restarted it, which is one more lost worker (up to worker_retries), each reported
    retried = [attempt for node, attempt, _ in hook.heard if node == "doomed"]
    assert retried == list(range(1, doomed.attempts)) and 1 <= len(retried) <= 3
    assert {error for _, _, error in hook.heard} <= {"ActorDiedError", "ActorUnavailableError"}
    assert record.status == "completed"


def test_a_timeout_on_a_model_actor_call_is_reported_as_locally() -> None:
    model = ScriptedModel({"": {"answer": "late"}}, latency=3.0)
    agent = kaizen.create_agent("slow", "question -> answer", {"model": model})
    builder = WorkflowBuilder("slow agent")
    builder.add_agent(agent, "slow", timeout=0.3)
    builder.add_node_instance(Sleeper("after", 0.0))
    workflow = builder.build()
    seen = []
    for runtime in (LocalRuntime(failure_policy="continue"), RayRuntime(failure_policy="continue")):
        with runtime:
            assert not isinstance(runtime, RayRuntime) or runtime.placement.on_actor(
                workflow.plan.nodes[workflow.plan.index["slow"]]
            )
            record = runtime.execute_with_record(workflow, {"slow": {"question": "q?"}})[1]
        slow = record.nodes["slow"]
        seen.append(
            (str(slow.status), slow.error, slow.attempts, str(record.nodes["after"].status))
        )
    assert seen[0] == seen[1]
    assert seen[1][:3] == ("failed", "TimeoutError: node 'slow' attempt 1 timed out after 0.3 s", 1)


# -- failures, timeouts, dead workers --------------------------------------------------------------


class Flaky(Node):
    """Fails its first `failures` attempts (counted in a file: attempts run in other processes)."""

    output_ports = (Port("value", int),)

    def __init__(self, node_id: str, marker: str, failures: int, **options: Any) -> None:
        self.marker, self.failures = marker, failures
        super().__init__(node_id, **options)

    def run(self) -> dict[str, Any]:
        path = Path(self.marker)
        seen = int(path.read_text()) if path.exists() else 0
        path.write_text(str(seen + 1))
        if seen < self.failures:
            raise ConnectionError(f"attempt {seen + 1} failed")
        return {"value": seen + 1}


class Retries(NodeRetryHook):
    def __init__(self) -> None:
        self.heard: list[tuple[str, int, str]] = []

    def on_node_retry(self, event: kaizen.NodeRetrying) -> None:
        self.heard.append((event.node_id, event.attempt, type(event.error).__name__))


def failing_workflow(marker: Path, failures: int, retries: int) -> Workflow:
    builder = WorkflowBuilder("flaky")
    policy = ExecutionPolicy(retries=retries)
    builder.add_node_instance(Flaky("flaky", str(marker), failures, policy=policy))
    builder.add_node_instance(Cell(1, [], "ok"))
    return builder.build()


@pytest.mark.parametrize(("failures", "retries"), [(1, 1), (2, 1)])
def test_failures_and_retries_are_reported_as_locally(
    tmp_path: Path, failures: int, retries: int
) -> None:
    seen = []
    for name, runtime in (("local", LocalRuntime), ("ray", RayRuntime)):
        marker = tmp_path / name
        hook = Retries()
        rt = runtime(failure_policy="continue", hooks=[hook])
        results, record = rt.execute_with_record(failing_workflow(marker, failures, retries))
        flaky = record.nodes["flaky"]
        seen.append(
            (results.get("flaky"), str(flaky.status), flaky.attempts, flaky.error, hook.heard)
        )
    assert seen[0] == seen[1]


def test_fail_fast_raises_the_same_error(tmp_path: Path) -> None:
    messages = []
    for name, runtime in (("local", LocalRuntime), ("ray", RayRuntime)):
        with pytest.raises(NodeExecutionError) as caught:
            runtime().execute(failing_workflow(tmp_path / name, 5, 0))
        assert caught.value.run_id is not None
        messages.append((caught.value.node_id, str(caught.value).splitlines()[0]))
    assert messages[0] == messages[1]


class Sleeper(Node):
    output_ports = (Port("done", bool),)

    def __init__(self, node_id: str, seconds: float, **options: Any) -> None:
        self.seconds = seconds
        super().__init__(node_id, **options)

    def run(self) -> dict[str, Any]:
        time.sleep(self.seconds)
        return {"done": True}


def test_a_timeout_is_reported_as_locally() -> None:
    builder = WorkflowBuilder("slow")
    builder.add_node_instance(Sleeper("slow", 3.0, policy=ExecutionPolicy(timeout=0.3)))
    builder.add_node_instance(Sleeper("after", 0.0))
    workflow = builder.build()
    seen = []
    for runtime in (LocalRuntime, RayRuntime):
        record = runtime(failure_policy="continue").execute_with_record(workflow)[1]
        slow = record.nodes["slow"]
        seen.append(
            (str(slow.status), slow.error, slow.attempts, str(record.nodes["after"].status))
        )
    assert seen[0] == seen[1]
    assert seen[1][1] == "TimeoutError: node 'slow' attempt 1 timed out after 0.3 s"


class Doomed(Node):
    """Kills its own worker process on its first attempt (a file marks that it did)."""

    output_ports = (Port("pid", int),)

    def __init__(self, node_id: str, marker: str) -> None:
        self.marker = marker
        super().__init__(node_id)

    def run(self) -> dict[str, Any]:
        path = Path(self.marker)
        if not path.exists():
            path.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return {"pid": os.getpid()}


def test_a_worker_killed_mid_task_is_retried_and_reported(tmp_path: Path) -> None:
    marker = tmp_path / "killed"
    builder = WorkflowBuilder("doomed")
    builder.add_node_instance(Doomed("doomed", str(marker)))
    hook = Retries()
    results, record = RayRuntime(hooks=[hook]).execute_with_record(builder.build())
    killed = int(marker.read_text())
    assert results["doomed"]["pid"] != killed  # the second attempt ran in a new worker
    doomed = record.nodes["doomed"]
    assert (str(doomed.status), doomed.attempts, doomed.error) == ("completed", 2, None)
    assert hook.heard == [("doomed", 1, "WorkerCrashedError")]
    assert record.status == "completed"


# -- values that cannot travel ---------------------------------------------------------------------


@kaizen.node
def show(value: Any) -> str:
    return repr(value)


@kaizen.node
def make_lock(n: int) -> Any:
    return threading.Lock()


def test_an_input_that_cannot_be_pickled_names_node_and_port() -> None:
    builder = WorkflowBuilder("lock")
    builder.add_node(show, "show")
    with pytest.raises(NodeExecutionError) as caught:
        RayRuntime().execute(builder.build(), {"show": {"value": threading.Lock()}})
    error = caught.value.__cause__
    assert isinstance(error, NotPicklableError)
    assert (error.node_id, error.port, error.direction) == ("show", "value", "input")
    assert "input port 'value' of node 'show'" in str(caught.value)


def test_an_output_that_cannot_be_pickled_names_node_and_port() -> None:
    builder = WorkflowBuilder("lock")
    builder.add_node(make_lock, "make")
    builder.add_node(show, "show")
    builder.add_connection("make", "result", "show", "value")
    _, record = RayRuntime(failure_policy="continue").execute_with_record(
        builder.build(), {"make": {"n": 1}}
    )
    assert record.nodes["make"].status == "failed"
    assert "output port 'result' of node 'make'" in (record.nodes["make"].error or "")
    assert record.nodes["show"].status == "skipped"


def test_importing_kaizen_or_naming_the_runtime_does_not_import_ray() -> None:
    code = "import sys, kaizen; kaizen.RayRuntime; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def ask_on_ray(x: int) -> int:
    return x + kaizen.interrupt({"question": "add what?"}, schema={"type": "integer"})


def test_a_node_on_a_ray_worker_pauses_and_resumes_with_its_answer(tmp_path: Path) -> None:
    builder = WorkflowBuilder("ray-pause")
    builder.add_node("FunctionNode", "ask", {"function": ask_on_ray})
    workflow = builder.build()
    store = tmp_path / "runs.db"
    with RayRuntime(checkpoint=store) as runtime:  # fail_fast: a pause is not a failure
        results, record = runtime.execute_with_record(workflow, {"ask": {"x": 1}})
        assert record.status == "waiting" and results == {}
        (asked,) = record.interrupts
        assert (asked.id, asked.payload) == ("ask/0", {"question": "add what?"})
        done, run_id = runtime.resume(record.run_id, workflow, answers={"ask/0": 41})
    assert done == {"ask": {"result": 42}} and run_id == record.run_id


# -- a shared store: a run started by one driver process resumes from another ---------------------

DRIVER = """
import os, sys, time
from pathlib import Path
from kaizen import RayRuntime, WorkflowBuilder

COUNTS = Path(os.environ["COUNTS"])

def _ran(name):
    with open(COUNTS / name, "a") as f:
        f.write("x")

def a(x: int) -> int:
    _ran("a"); return x + 1

def b(value: int) -> int:
    _ran("b"); return value * 10

def c(value: int) -> int:
    _ran("c")
    if not (COUNTS / "go").exists():
        time.sleep(120)  # the first driver is killed while this waits
    return value - 3

def build():
    wf = WorkflowBuilder("shared-ray")
    for name, fn in (("a", a), ("b", b), ("c", c)):
        wf.add_node("FunctionNode", name, {"function": fn})
    wf.add_connection("a", "result", "b", "value")
    wf.add_connection("b", "result", "c", "value")
    return wf.build()

if __name__ == "__main__":
    import ray
    ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    mode, store, run_id = sys.argv[1:4]
    with RayRuntime(checkpoint=store, num_cpus=0.25) as runtime:
        if mode == "run":
            runtime.execute(build(), {"a": {"x": 1}}, run_id=run_id)
        else:
            results, _ = runtime.resume(run_id, build())
            print(results["c"]["result"])
"""


def test_a_run_started_by_one_ray_driver_resumes_from_another(
    store_location: str, tmp_path: Path
) -> None:
    """`RayRuntime(checkpoint=...)`: the driver writes each node's checkpoint to the store; a
    driver process killed mid-run leaves them there, and another driver resumes the run
    without running its finished nodes again (on Postgres, the two share only the database)."""
    from kaizen.store import Store
    from kaizen.store.runs import load_checkpoints

    (tmp_path / "driver.py").write_text(DRIVER)
    counts = tmp_path / "counts"
    counts.mkdir()
    env = {**os.environ, "COUNTS": str(counts),
           "RAY_ADDRESS": ray.get_runtime_context().gcs_address}  # fmt: skip
    command = [sys.executable, str(tmp_path / "driver.py")]
    first = subprocess.Popen([*command, "run", store_location, "shared-1"], env=env, cwd=tmp_path)
    store = Store(store_location)
    deadline = time.monotonic() + 120
    while not (counts / "c").exists() or set(_checkpoints(store, "shared-1")) != {"a", "b"}:
        assert first.poll() is None, "the first driver ended before it was killed"
        assert time.monotonic() < deadline, "node c never started"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    (counts / "go").touch()
    second = subprocess.run(
        [*command, "resume", store_location, "shared-1"], env=env, cwd=tmp_path,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip().splitlines()[-1] == "17"  # ((1 + 1) * 10) - 3
    ran = {name: len((counts / name).read_text()) for name in "abc"}
    assert ran == {"a": 1, "b": 1, "c": 2}  # only c, killed mid-way, ran again
    assert load_checkpoints(store, "shared-1")["c"] == {"result": 17}


def _checkpoints(store: Any, run_id: str) -> list[str]:
    return [row[0] for row in store.read("SELECT node_id FROM checkpoints WHERE run_id = ?",
                                         (run_id,))]  # fmt: skip
