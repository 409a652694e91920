"""Debate pattern: unrolled rounds, what each debater saw, the verdict, early stop, failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kaizen.agents import create_agent
from kaizen.patterns import create_debate_workflow, role_agent
from kaizen.runtime import LocalRuntime, NodeStatus, RunRecord
from kaizen.testing import ScriptedModel
from kaizen.workflow import WorkflowBuilder

Messages = list[dict[str, Any]]


def persona_of(messages: Messages) -> str:
    system = str(messages[0]["content"]).rsplit("\n\n", 1)[-1].lower()  # the instructions
    for role in ("optimist", "pessimist", "skeptic", "pragmatist", "moderator", "judge"):
        if role in system.split(".")[0]:
            return role
    return "?"


def debate_script(positions: dict[str, str], fail: set[str] = frozenset()) -> ScriptedModel:  # type: ignore[assignment]
    """Each debater always takes its position from `positions`; the moderator rules 'for'."""

    def reply(messages: Messages) -> Any:
        who = persona_of(messages)
        if who in fail:
            return 500
        if who in ("moderator", "judge"):
            return {"position": "for", "rationale": "the optimist argued best", "confidence": "0.7"}
        return {"position": positions[who], "argument": f"{who} says so", "confidence": 0.8}

    return ScriptedModel(reply)


def run(builder: WorkflowBuilder, **parameters: Any) -> tuple[dict[str, Any], RunRecord]:
    runtime = LocalRuntime(failure_policy="continue")
    results, run_id = runtime.execute(builder.build(), parameters=parameters or None)
    return results, runtime.get_record(run_id)


SPLIT = {"optimist": "for", "pessimist": "against", "skeptic": "against"}


def test_rounds_are_unrolled_into_nodes_and_grouped() -> None:
    model = debate_script(SPLIT)
    builder = create_debate_workflow(
        ["optimist", "pessimist", "skeptic", "moderator"],
        topic="Cities should ban cars",
        rounds=2,
        model=model,
    )
    wf = builder.build()
    assert set(wf.nodes) == {
        "topic",
        *(f"round{r}/{d}" for r in (1, 2) for d in ("optimist", "pessimist", "skeptic")),
        "round1/arguments",
        "round2/arguments",
        "moderator",
    }
    edges = {(c.source, c.source_port, c.target, c.target_port) for c in wf.connections}
    for debater in ("optimist", "pessimist", "skeptic"):
        assert ("round1/arguments", "said", f"round2/{debater}", "previous_arguments") in edges
        assert ("topic", "value", f"round1/{debater}", "topic") in edges
        assert (
            f"round1/{debater}",
            "argument",
            "round1/arguments",
            f"{debater}__argument",
        ) in edges
    assert ("round2/arguments", "arguments", "moderator", "arguments") in edges
    assert ("topic", "value", "moderator", "topic") in edges
    assert wf.nodes["round2/skeptic"].group == "round 2"  # type: ignore[attr-defined]
    assert wf.nodes["moderator"].group == "verdict"  # type: ignore[attr-defined]
    assert wf.open_inputs == ()


def test_each_round_sees_the_topic_and_every_argument_of_the_round_before() -> None:
    model = debate_script(SPLIT)
    builder = create_debate_workflow(
        ["optimist", "pessimist", "skeptic"],
        topic="Cities should ban cars",
        rounds=3,
        judge="judge",
        model=model,
    )
    results, record = run(builder)
    assert record.status == "completed"
    prompts = [(persona_of(c.messages), c.messages[-1]["content"]) for c in model.calls]
    debater_prompts = [p for who, p in prompts if who in SPLIT]
    assert len(debater_prompts) == 9  # 3 debaters x 3 rounds
    assert all("Cities should ban cars" in p for p in debater_prompts)
    first_round = [p for p in debater_prompts if "says so" not in p]
    later = [p for p in debater_prompts if "says so" in p]
    assert len(first_round) == 3 and len(later) == 6
    for prompt in later:  # every argument of the previous round, its own included, as said:
        for debater in SPLIT:  # without the "name (side, confidence):" a small model copies
            assert f'"{debater} says so"' in prompt
        assert "confidence 0.80" not in prompt
    judge_prompt = next(p for who, p in prompts if who == "judge")
    assert "optimist (for, confidence 0.80)" in judge_prompt
    assert results["round3/arguments"]["positions"] == SPLIT
    verdict = results["judge"]
    assert verdict == {
        "position": "for",
        "rationale": "the optimist argued best",
        "confidence": 0.7,
    }
    assert isinstance(verdict["confidence"], float)


def test_the_last_agent_is_the_judge_when_it_is_one() -> None:
    model = debate_script(SPLIT)
    wf = create_debate_workflow(["optimist", "pessimist", "judge"], rounds=1, model=model).build()
    assert "judge" in wf.nodes and "round1/judge" not in wf.nodes
    wf = create_debate_workflow(["optimist", "pessimist"], rounds=1, model=model).build()
    assert "moderator" in wf.nodes  # the default judge


def test_topic_as_a_run_parameter_reaches_every_debater_and_the_judge() -> None:
    model = debate_script(SPLIT)
    builder = create_debate_workflow(["optimist", "pessimist"], rounds=2, model=model)
    assert "topic" not in builder.build().nodes
    results, _ = run(builder, topic="Remote work beats the office")
    assert len(model.calls) == 5
    assert all("Remote work beats the office" in c.messages[-1]["content"] for c in model.calls)
    assert results["moderator"]["position"] == "for"


def test_early_stop_skips_the_later_rounds_visibly_and_the_judge_still_rules() -> None:
    agree = {"optimist": "for", "pragmatist": "for", "skeptic": "for"}
    model = debate_script(agree)
    builder = create_debate_workflow(
        ["optimist", "pragmatist", "skeptic"], topic="t", rounds=3, early_stop=True, model=model
    )
    results, record = run(builder)
    assert results["round1/convergence"]["converged"] is True
    assert results["verdict/arguments"]["rounds_completed"] == 1
    for r in (2, 3):  # every later round hears why directly
        for debater in agree:
            node = record.nodes[f"round{r}/{debater}"]
            assert node.status is NodeStatus.SKIPPED
            assert (node.skip_reason or "").endswith("converged after round 1")
        collector = record.nodes[f"round{r}/arguments"]
        assert collector.status is NodeStatus.SKIPPED
        assert "converged after round 1" in (collector.skip_reason or "")
    assert results["round2/convergence"] == {"stopped": 1}
    assert record.nodes["moderator"].status is NodeStatus.COMPLETED
    assert len(model.calls) == 4  # 3 debaters, once, and the judge
    judge_prompt = model.calls[-1].messages[-1]["content"]
    assert "optimist (for, confidence 0.80)" in judge_prompt


def test_early_stop_without_convergence_runs_every_round() -> None:
    model = debate_script(SPLIT)
    builder = create_debate_workflow(
        ["optimist", "pessimist", "skeptic"], topic="t", rounds=3, early_stop=True, model=model
    )
    results, record = run(builder)
    assert results["round2/convergence"]["converged"] is False
    assert results["verdict/arguments"]["rounds_completed"] == 3
    assert record.by_status(NodeStatus.SKIPPED) == []
    # 2 of 3 agreeing is enough with convergence=0.6
    model = debate_script(SPLIT)
    builder = create_debate_workflow(
        ["optimist", "pessimist", "skeptic"],
        topic="t",
        rounds=3,
        early_stop=True,
        convergence=0.6,
        model=model,
    )
    results, _ = run(builder)
    assert results["verdict/arguments"]["rounds_completed"] == 1


def test_a_failed_debater_is_left_out_and_the_debate_goes_on() -> None:
    model = debate_script(SPLIT, fail={"skeptic"})
    builder = create_debate_workflow(
        ["optimist", "pessimist", "skeptic"],
        topic="t",
        rounds=2,
        model=model,
        agent_config={"retries": 0},
    )
    results, record = run(builder)
    assert record.nodes["round1/skeptic"].status is NodeStatus.FAILED
    assert record.status == "failed"  # the run does not hide the failure
    assert [e.split(" (")[0] for e in results["round1/arguments"]["arguments"]] == [
        "optimist",
        "pessimist",
    ]
    assert results["moderator"]["position"] == "for"


def test_agents_as_objects() -> None:
    model = debate_script(SPLIT)
    optimist = role_agent("optimist", "debater", config={"model": model})
    custom = create_agent(
        "contrarian",
        signature="topic: str, previous_arguments: list[str] = [] -> argument: str",
        config={"model": ScriptedModel(lambda m: {"argument": "no way"})},
    )
    builder = create_debate_workflow([optimist, custom], topic="t", rounds=2, model=model)
    results, _ = run(builder)
    assert results["round2/arguments"]["arguments"][1] == "contrarian: no way"


def test_bad_debates_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="at least 2 debaters"):
        create_debate_workflow(["optimist", "moderator"], rounds=1)
    with pytest.raises(ValueError, match="rounds"):
        create_debate_workflow(["optimist", "pessimist"], rounds=0)
    with pytest.raises(TypeError, match="role name"):
        create_debate_workflow([42, "pessimist"], rounds=1)  # type: ignore[list-item]


def test_the_debate_renders_with_its_rounds(tmp_path: Path) -> None:
    model = debate_script(SPLIT)
    wf = create_debate_workflow(
        ["optimist", "pessimist"], topic="t", rounds=2, early_stop=True, model=model
    ).build()
    path = wf.render(tmp_path / "debate.svg")
    svg = path.read_text()
    assert svg.lstrip().startswith("<?xml") or "<svg" in svg
    for text in ("round 1", "round 2", "verdict", "round2/optimist"):
        assert text in svg
    _, record = run(
        create_debate_workflow(["optimist", "pessimist"], topic="t", rounds=2, model=model)
    )
    from kaizen.render import render_run

    run_svg = render_run(record, tmp_path / "debate-run.svg", workflow=wf).read_text()
    assert "<svg" in run_svg


def test_sided_debaters_given_by_role_keep_their_side() -> None:
    wf = create_debate_workflow(
        ["optimist", "pessimist", "pragmatist"], topic="t", rounds=2, model=debate_script(SPLIT)
    ).build()
    for r in (1, 2):
        pessimist = wf.nodes[f"round{r}/pessimist"].agent  # type: ignore[attr-defined]
        assert pessimist.output_schema["properties"]["position"]["const"] == "against"
        assert "AGAINST" in (pessimist.config.effective_instructions or "")
        optimist = wf.nodes[f"round{r}/optimist"].agent  # type: ignore[attr-defined]
        assert optimist.output_schema["properties"]["position"]["const"] == "for"
    pragmatist = wf.nodes["round1/pragmatist"].agent  # type: ignore[attr-defined]
    assert pragmatist.output_schema["properties"]["position"]["enum"] == ["for", "against"]
