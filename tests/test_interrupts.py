"""A person's pause is not a failure: `kaizen.interrupt(...)` in function nodes, the run that
waits, `runtime.resume(run_id, workflow, answers=...)`, and the typed errors of a resume that
cannot be taken (each changes nothing stored)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kaizen
from kaizen import LocalRuntime, WorkflowBuilder
from kaizen.errors import (
    InterruptAnswerError,
    RunNotFoundError,
    RunNotWaitingError,
    UnknownInterruptError,
)
from kaizen.interrupts import Interrupt
from kaizen.runtime.hooks import NodeWaitHook
from kaizen.store import Store
from kaizen.store.interrupts import load_interrupts, save_pause
from kaizen.store.runs import load_run

RUNS: dict[str, int] = {}
LOCK = threading.Lock()


def _ran(name: str) -> None:
    with LOCK:
        RUNS[name] = RUNS.get(name, 0) + 1


@pytest.fixture(autouse=True)
def _counts() -> None:
    RUNS.clear()


def ask(x: int) -> int:
    _ran("ask")
    howmany = kaizen.interrupt({"question": "how many?", "x": x}, schema={"type": "integer"})
    return x + howmany


async def ask_async(x: int) -> int:
    _ran("ask_async")
    return x + kaizen.interrupt("add what?")


def twice(x: int) -> int:
    _ran("twice")
    first = kaizen.interrupt("first?")
    second = kaizen.interrupt({"then": first})
    return x + first + second


def double(x: int) -> int:
    _ran("double")
    return x * 2


def plus_one(value: int) -> int:
    _ran("plus_one")
    return value + 1


def broken(x: int) -> int:
    raise ValueError("broken on purpose")


def _workflow(asker: Any = ask, *, broken_branch: bool = False) -> Any:
    """asker -> plus_one, and an independent double (and, optionally, a failing node)."""
    wf = WorkflowBuilder("pausing")
    wf.add_node("FunctionNode", "ask", {"function": asker})
    wf.add_node("FunctionNode", "after", {"function": plus_one})
    wf.add_node("FunctionNode", "other", {"function": double})
    wf.add_connection("ask", "result", "after", "value")
    if broken_branch:
        wf.add_node("FunctionNode", "broken", {"function": broken})
    return wf.build()


PARAMS = {"ask": {"x": 1}, "other": {"x": 3}}


def _runtime(store_location: str, **options: Any) -> LocalRuntime:
    return LocalRuntime(checkpoint=store_location, **options)


@pytest.mark.parametrize("policy", ["fail_fast", "continue"])
@pytest.mark.parametrize("asker", [ask, ask_async], ids=["sync", "async"])
def test_a_pause_ends_the_run_waiting_and_execute_returns_normally(
    store_location: str, tmp_path: Path, policy: Any, asker: Any
) -> None:
    runtime = _runtime(store_location, failure_policy=policy)
    results, record = runtime.execute_with_record(_workflow(asker), PARAMS)
    assert record.status == "waiting"
    assert results == {"other": {"result": 6}}  # the independent branch ran on
    assert record.nodes["ask"].status == "waiting"
    assert record.nodes["after"].status == "pending"  # its dependant waits with it
    (asked,) = record.interrupts
    assert asked.id == "ask/0" and asked.node_id == "ask" and not asked.answered
    assert asked.payload == ({"question": "how many?", "x": 1} if asker is ask else "add what?")
    stored = load_run(Store.open(store_location), record.run_id)
    assert stored.status == "waiting"
    assert stored.record is not None and stored.record["interrupts"][0]["id"] == "ask/0"


def test_resuming_with_the_answer_reruns_the_node_from_its_start_and_finishes(
    store_location: str,
    tmp_path: Path,
) -> None:
    runtime = _runtime(store_location)
    _, record = runtime.execute_with_record(_workflow(), PARAMS)
    results, resumed = runtime.resume_with_record(
        record.run_id, _workflow(), answers={"ask/0": 41}, by="ann"
    )
    assert resumed.status == "completed"
    assert results["ask"] == {"result": 42} and results["after"] == {"result": 43}
    assert results["other"] == {"result": 6}  # restored from its checkpoint
    assert RUNS == {"ask": 2, "double": 1, "plus_one": 1}  # ask re-ran; double did not
    (answered,) = resumed.interrupts
    assert (answered.answered, answered.answer, answered.answered_by) == (True, 41, "ann")
    assert answered.answered_at is not None


def test_a_node_asking_twice_waits_again_until_every_answer_is_in(
    store_location: str, tmp_path: Path
) -> None:
    runtime = _runtime(store_location)
    _, record = runtime.execute_with_record(_workflow(twice), PARAMS)
    _, again = runtime.resume_with_record(record.run_id, _workflow(twice), answers={"ask/0": 10})
    assert again.status == "waiting"
    assert [i.id for i in again.open_interrupts] == ["ask/1"]
    assert again.open_interrupts[0].payload == {"then": 10}  # it saw its first answer
    results, done = runtime.resume_with_record(
        record.run_id, _workflow(twice), answers={"ask/1": 100}
    )
    assert done.status == "completed" and results["ask"] == {"result": 111}


def test_a_pause_is_not_retried_and_not_an_error(store_location: str, tmp_path: Path) -> None:
    wf = WorkflowBuilder("retrying")
    wf.add_node("FunctionNode", "ask", {"function": ask}, retries=3)
    results, record = _runtime(store_location).execute_with_record(wf.build(), {"ask": {"x": 1}})
    assert record.status == "waiting" and results == {}
    assert RUNS == {"ask": 1}
    assert record.nodes["ask"].attempts == 1 and record.nodes["ask"].error is None


def test_a_failed_node_beside_a_waiting_one_makes_the_run_failed(
    store_location: str, tmp_path: Path
) -> None:
    runtime = _runtime(store_location, failure_policy="continue")
    _, record = runtime.execute_with_record(_workflow(broken_branch=True), {**PARAMS,
                                            "broken": {"x": 0}})  # fmt: skip
    assert record.status == "failed"
    assert record.nodes["ask"].status == "waiting"  # still waits: the pause is not lost
    assert [i.id for i in record.interrupts] == ["ask/0"]


def test_hooks_and_subscribers_hear_the_pause(store_location: str, tmp_path: Path) -> None:
    heard: list[Any] = []
    events: list[Any] = []

    class Listen(NodeWaitHook):
        def on_node_wait(self, event: Any) -> None:
            heard.append(event)

    runtime = _runtime(store_location, hooks=[Listen()])
    runtime.subscribe(events.append)
    runtime.execute_with_record(_workflow(), PARAMS)
    (event,) = heard
    assert event.node_id == "ask" and [i.id for i in event.interrupts] == ["ask/0"]
    (published,) = [e for e in events if e.kind == "interrupt"]
    assert published.data["interrupts"][0]["payload"] == {"question": "how many?", "x": 1}


# -- resumes that cannot be taken: typed, and nothing stored changes ---------------------------


def _snapshot(store_location: str, run_id: str) -> tuple[str, list[Interrupt]]:
    store = Store.open(store_location)
    return load_run(store, run_id).status, load_interrupts(store, run_id)


def test_an_answer_for_an_interrupt_never_asked_names_the_open_ones(
    store_location: str, tmp_path: Path
) -> None:
    runtime = _runtime(store_location)
    _, record = runtime.execute_with_record(_workflow(), PARAMS)
    before = _snapshot(store_location, record.run_id)
    with pytest.raises(UnknownInterruptError) as caught:
        runtime.resume(record.run_id, _workflow(), answers={"ask/7": 1, "ask/0": 2})
    assert caught.value.interrupt_id == "ask/7" and caught.value.open == ["ask/0"]
    assert "ask/0" in str(caught.value)
    assert _snapshot(store_location, record.run_id) == before  # ask/0's answer was not kept either
    assert RUNS == {"ask": 1, "double": 1}


def test_an_answer_of_the_wrong_shape_says_where_and_changes_nothing(
    store_location: str, tmp_path: Path
) -> None:
    runtime = _runtime(store_location)
    _, record = runtime.execute_with_record(_workflow(), PARAMS)
    before = _snapshot(store_location, record.run_id)
    with pytest.raises(InterruptAnswerError) as caught:
        runtime.resume(record.run_id, _workflow(), answers={"ask/0": "forty-one"})
    assert caught.value.interrupt_id == "ask/0"
    assert "integer" in caught.value.problem
    assert _snapshot(store_location, record.run_id) == before


def test_a_double_resume_and_a_resume_of_a_finished_run_are_refused(
    store_location: str, tmp_path: Path
) -> None:
    runtime = _runtime(store_location)
    _, record = runtime.execute_with_record(_workflow(), PARAMS)
    runtime.resume(record.run_id, _workflow(), answers={"ask/0": 1})
    before = _snapshot(store_location, record.run_id)
    with pytest.raises(RunNotWaitingError) as caught:
        runtime.resume(record.run_id, _workflow(), answers={"ask/0": 2})
    assert caught.value.status == "completed"
    assert _snapshot(store_location, record.run_id) == before

    _, plain = runtime.execute(_workflow_only(), {"only": {"value": 1}})
    with pytest.raises(RunNotWaitingError, match="waits for no answer"):
        runtime.resume(plain, _workflow_only(), answers={"only/0": 1})


def _workflow_only() -> Any:
    wf = WorkflowBuilder("plain")
    wf.add_node("FunctionNode", "only", {"function": plus_one})
    return wf.build()


def test_resuming_a_run_the_store_never_held_says_how_to_keep_one(
    store_location: str, tmp_path: Path
) -> None:
    with pytest.raises(RunNotFoundError, match="checkpoint"):
        _runtime(store_location).resume("nope", _workflow(), answers={"ask/0": 1})


def test_two_resumes_racing_for_one_waiting_run_one_wins(
    store_location: str, tmp_path: Path
) -> None:
    runtime = _runtime(store_location)
    _, record = runtime.execute_with_record(_workflow(), PARAMS)
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def resume(answer: int) -> None:
        start.wait()
        try:
            LocalRuntime(checkpoint=store_location).resume(
                record.run_id, _workflow(), answers={"ask/0": answer}
            )
            outcomes.append("resumed")
        except (RunNotWaitingError, UnknownInterruptError):
            outcomes.append("refused")

    threads = [threading.Thread(target=resume, args=(n,)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused", "resumed"]
    assert RUNS["ask"] == 2  # the first run, and the one resume that won


def test_a_waiting_run_can_be_cancelled_and_then_not_resumed(
    store_location: str, tmp_path: Path
) -> None:
    runtime = _runtime(store_location)
    _, record = runtime.execute_with_record(_workflow(), PARAMS)
    runtime.cancel_waiting(record.run_id)
    status, asked = _snapshot(store_location, record.run_id)
    assert status == "cancelled" and not asked[0].answered
    with pytest.raises(RunNotWaitingError) as caught:
        runtime.resume(record.run_id, _workflow(), answers={"ask/0": 1})
    assert caught.value.status == "cancelled"
    with pytest.raises(RunNotWaitingError):
        runtime.cancel_waiting(record.run_id)  # cancelling twice: nothing waits


def test_a_resume_racing_a_cancel_gives_exactly_one_outcome(
    store_location: str, tmp_path: Path
) -> None:
    runtime = _runtime(store_location)
    _, record = runtime.execute_with_record(_workflow(), PARAMS)
    start = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def resume() -> None:
        start.wait()
        try:
            LocalRuntime(checkpoint=store_location).resume(
                record.run_id, _workflow(), answers={"ask/0": 1}
            )
            outcomes["resume"] = "won"
        except RunNotWaitingError:
            outcomes["resume"] = "lost"

    def cancel() -> None:
        start.wait()
        try:
            LocalRuntime(checkpoint=store_location).cancel_waiting(record.run_id)
            outcomes["cancel"] = "won"
        except RunNotWaitingError:
            outcomes["cancel"] = "lost"

    threads = [threading.Thread(target=resume), threading.Thread(target=cancel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes.values()) == ["lost", "won"]
    status, _ = _snapshot(store_location, record.run_id)
    assert status == ("completed" if outcomes["resume"] == "won" else "cancelled")


def test_interrupt_outside_a_node_says_where_it_can_be_called() -> None:
    with pytest.raises(RuntimeError, match="outside a node"):
        kaizen.interrupt("anyone?")


# -- the store -----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=10,
)  # fmt: skip


tool_args = st.none() | st.dictionaries(st.text(max_size=5), json_values, max_size=3)


@settings(max_examples=40, deadline=None)
@given(payload=json_values, args=tool_args, state=json_values)
def test_interrupts_round_trip_through_the_store(payload: Any, args: Any, state: Any) -> None:
    store = Store(":memory:")
    with store.write() as db:
        db.execute(
            "INSERT INTO runs (run_id, workflow, fingerprint, nodes, parameters, status,"
            " started) VALUES ('r', 'w', 'f', '{}', '{}', 'waiting', 0)"
        )
    asked = Interrupt("n/0", "n", 0, payload, {"type": "object"}, "approval", "tool", args, 1.5)
    save_pause(store, "r", "n", [asked], state)
    assert load_interrupts(store, "r") == [asked]


# -- the access policy's approval is a pause; the CLI answers -------------------------------------


def _gated(model: Any, audit_path: Path | None = None) -> Any:
    from kaizen.testing import ScriptedModel

    assert isinstance(model, ScriptedModel)
    agent = kaizen.create_agent("sensitive", "question -> answer", {"model": model})
    agent.set_access_policy("team_lead_approval_required")
    if audit_path is not None:
        agent.enable_audit_logging(audit_path)
    wf = WorkflowBuilder("gated")
    wf.add_node("ConstantNode", "ask", {"value": "q"})
    wf.add_agent(agent, "gate")
    wf.add_connection("ask", "value", "gate", "question")
    return wf.build()


def test_an_approval_required_by_the_policy_pauses_under_fail_fast_and_the_cli_answers(
    store_location: str,
    tmp_path: Path,
) -> None:
    import json

    from typer.testing import CliRunner

    from kaizen.cli.app import app
    from kaizen.testing import ScriptedModel

    model = ScriptedModel(lambda messages: {"answer": "approved answer"})
    audit = tmp_path / "audit.jsonl"
    workflow = _gated(model, audit)
    runtime = _runtime(store_location)  # fail_fast, the default: a pause is not a failure
    results, record = runtime.execute_with_record(workflow)
    assert record.status == "waiting" and "gate" not in results and model.calls == []
    (asked,) = record.interrupts
    assert asked.kind == "approval" and asked.payload["access_policy"] == "team_lead"
    stored = Store.open(store_location)
    assert load_run(stored, record.run_id).status == "waiting_approval"  # as the ADR names it

    store = store_location
    cli = CliRunner().invoke(app, ["approve", record.run_id, "gate", "--by", "dana",
                                   "--store", store])  # fmt: skip
    assert cli.exit_code == 0, cli.output
    results, done = runtime.resume_with_record(record.run_id, workflow)
    assert done.status == "completed" and results["gate"]["answer"] == "approved answer"
    assert done.interrupts[0].answered_by == "dana"
    entries = [json.loads(line) for line in audit.read_text().splitlines()]
    actions = [(e["action"], e["decision"]) for e in entries]
    assert ("pause", "waiting") in actions
    assert ("answer", "answered by dana") in actions
    assert ("access", "approved") in actions


def test_an_approval_denied_with_a_reason_fails_the_node_with_it(
    store_location: str, tmp_path: Path
) -> None:
    from kaizen.observe.policy import approve
    from kaizen.testing import ScriptedModel

    model = ScriptedModel(lambda messages: {"answer": "never"})
    workflow = _gated(model)
    runtime = _runtime(store_location, failure_policy="continue")
    _, record = runtime.execute_with_record(workflow)
    approve(record.run_id, "gate", by="dana", approved=False, reason="not this quarter",
            store=store_location)  # fmt: skip
    _, done = runtime.resume_with_record(record.run_id, workflow)
    assert done.status == "failed" and model.calls == []
    assert "not this quarter" in (done.nodes["gate"].error or "")
    assert "AccessDeniedError" in (done.nodes["gate"].error or "")


FLOW_FILE = """
import kaizen
from kaizen import WorkflowBuilder

def ask(x: int) -> int:
    return x + kaizen.interrupt({"question": "how many?"}, schema={"type": "integer"})

wf = WorkflowBuilder("cli-pausing")
wf.add_node("FunctionNode", "ask", {"function": ask})
workflow = wf.build()
"""


def test_kaizen_runs_resume_takes_answers_and_shows_interrupts(
    store_location: str, tmp_path: Path
) -> None:
    import json

    from typer.testing import CliRunner

    from kaizen.cli.app import app

    (tmp_path / "flow.py").write_text(FLOW_FILE)
    target = f"{tmp_path / 'flow.py'}:workflow"
    store = store_location
    from kaizen.cli.support import load_workflow

    _, record = LocalRuntime(checkpoint=store).execute_with_record(
        load_workflow(target), {"ask": {"x": 1}}
    )
    shown = CliRunner().invoke(app, ["runs", "show", record.run_id, "--store", store])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["interrupts"][0]["id"] == "ask/0"
    wrong = CliRunner().invoke(app, ["runs", "resume", record.run_id, target, "--answer",
                                     "ask/0=lots", "--store", store])  # fmt: skip
    assert wrong.exit_code == 1 and "integer" in wrong.output
    done = CliRunner().invoke(app, ["runs", "resume", record.run_id, target, "--answer",
                                    "ask/0=41", "--by", "ann", "--store", store])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["ask"] == {"result": 42}
