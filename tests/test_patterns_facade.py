"""The facade: `Kaizen(...).create_*` patterns whose role-name agents inherit the instance config,
and the module-level functions under `kaizen.`."""

from __future__ import annotations

import kaizen
from kaizen.agents import Kaizen
from kaizen.runtime import LocalRuntime
from kaizen.testing import ScriptedModel


def test_role_agents_inherit_the_instance_config() -> None:
    model = ScriptedModel(lambda m: {"answer": "yes", "confidence": 0.9, "rationale": "r"})
    kz = Kaizen(config={"model": model, "temperature": 0.3})
    builder = kz.create_consensus_workflow(["expert", "analyst"], "unanimous", question="q")
    results, _ = LocalRuntime().execute(builder.build())
    assert results["consensus"]["result"].reached
    assert [c.params.get("temperature") for c in model.calls] == [0.3, 0.3]


def test_every_pattern_is_on_the_facade_and_the_package() -> None:
    model = ScriptedModel([])
    kz = Kaizen(config={"model": model})
    builders = [
        kz.create_pipeline(["researcher", "writer"]),
        kz.create_debate_workflow(["optimist", "pessimist"], topic="t", rounds=2),
        kz.create_consensus_workflow(["expert", "expert"]),
        kz.create_supervisor_agent("manager", {"workers": ["researcher"]}),
    ]
    assert [b.name for b in builders] == ["pipeline", "debate", "consensus", "manager"]
    for builder in builders:
        builder.build()


def test_the_patterns_are_exported_from_kaizen() -> None:
    """DESIGN.md's contract: `kaizen.create_debate_workflow(...)` and friends."""
    import kaizen.patterns as patterns

    for name in (
        "create_pipeline",
        "create_debate_workflow",
        "create_consensus_workflow",
        "create_supervisor_agent",
    ):
        assert getattr(kaizen, name) is getattr(patterns, name)
