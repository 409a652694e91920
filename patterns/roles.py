"""Role names: how a pattern turns `"optimist"` into an agent with a role-specific signature.

A role is a persona (one sentence of instructions). The pattern that asks for the agent decides
what the agent does, and so its signature (a *part*): a debater argues, a judge rules, a voter
votes, a worker works, a supervisor plans, reviews and synthesises. Any name is accepted as a
role; the names in `PERSONAS` get tailored instructions, any other name `"You are a <name>."`.
Prompts stay short on purpose: the embedded local model is small.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kaizen.agents.agent import Agent
    from kaizen.agents.facade import Kaizen
    from kaizen.signatures import Signature

#: Known role names and their personas.
PERSONAS: dict[str, str] = {
    # debaters
    "optimist": "You are an optimist: you look for the benefits and opportunities.",
    "pessimist": "You are a pessimist: you look for the risks and costs.",
    "skeptic": "You are a skeptic: you question claims and ask for evidence.",
    "pragmatist": "You are a pragmatist: you weigh what works in practice.",
    "advocate": "You argue in favour of the proposition.",
    "critic": "You argue against the proposition.",
    "devils_advocate": "You take the less popular side, whatever it is.",
    # judges
    "moderator": "You are a fair debate moderator.",
    "judge": "You are an impartial judge.",
    # voters and workers
    "expert": "You are a domain expert.",
    "analyst": "You are a careful analyst who reasons step by step.",
    "economist": "You are an economist: you think about costs, incentives and markets.",
    "engineer": "You are an engineer: you think about feasibility and trade-offs.",
    "ethicist": "You are an ethicist: you think about fairness and harm.",
    "researcher": "You are a researcher: you find and summarise relevant facts.",
    "writer": "You are a writer: you write clear, concise prose.",
    "reviewer": "You are a reviewer: you check work for errors and gaps.",
    "coder": "You are a programmer: you write correct, simple code.",
    # supervisors
    "supervisor": "You are a supervisor who splits work among a team and checks it.",
    "manager": "You are a manager who splits work among a team and checks it.",
}

#: What each part does, and its signature. `{options}` is filled in for voters with fixed options.
PARTS: dict[str, tuple[str, str]] = {
    "debater": (
        "Debate the topic: give one short argument, answering the other debaters' arguments "
        "when there are any, then your position, for or against.",
        'topic: str "the proposition under debate", '
        'previous_arguments: list[str] = [] "arguments of the previous round" '
        '-> argument: str "your argument, one or two sentences", '
        'position: Literal["for", "against"] "for or against the proposition", '
        'confidence: float (ge=0, le=1) "how sure you are, from 0 to 1"',
    ),
    "judge": (
        "Read the debate arguments and rule on the topic: the position that was argued best.",
        'topic: str "the proposition under debate", '
        'arguments: list[str] "the final arguments, one per debater" '
        "-> rationale: str "
        '"which arguments were best and why, one or two sentences", '
        'position: Literal["for", "against", "undecided"] "the winning position", '
        'confidence: float (ge=0, le=1) "how sure you are, from 0 to 1"',
    ),
    "voter": (
        "Think about the question in one sentence, then answer it briefly and say how "
        "confident you are.",
        'question: str -> rationale: str "your reasoning, one sentence", '
        'answer: {answer_type} "a short answer", '
        'confidence: float (ge=0, le=1) "how sure you are, from 0 to 1"',
    ),
    "worker": (
        "Do the task you are given and report the result briefly.",
        'task: str "your assignment", context: dict = {} -> result: str "the result of your work"',
    ),
    "stage": (
        "Do your part of the task, building on the previous stage's result if there is one.",
        'task: str "the overall task", '
        'previous_result: str = "" "the previous stage\'s result", '
        'context: dict = {} "details for your part" '
        '-> result: str "your result"',
    ),
    "planner": (
        "Split the task into subtasks and assign each to one worker from the list, by name.",
        'task: str "the overall task", workers: list[str] "the team: name and speciality" '
        "-> assignments: list[dict[str, str]] "
        '"one entry per subtask: {\\"worker\\": name, \\"subtask\\": what to do}"',
    ),
    "splitter": (
        "Split the task into a few independent subtasks.",
        'task: str "the overall task", workers: list[str] "the team" '
        '-> subtasks: list[str] "one short instruction per subtask"',
    ),
    "reviewer": (
        "Review the workers' results against the task. Approve them, or name the workers "
        "whose result must be revised and say what to fix.",
        'task: str "the overall task", results: list[str] "each worker\'s result" '
        '-> approved: bool "true when every result is good enough", '
        "revisions: list[dict[str, str]] "
        '"for each result to redo: {\\"worker\\": name, \\"feedback\\": what to fix}"',
    ),
    "synthesizer": (
        "Combine the workers' results into one final answer to the task.",
        'task: str "the overall task", results: list[str] "each worker\'s result" '
        '-> answer: str "the final answer"',
    ),
}


def persona(role: str) -> str:
    """The persona of a role name (tailored for known roles, generic otherwise)."""
    key = role_key(role)
    return PERSONAS.get(key, f"You are a {role.replace('_', ' ')}.")


def role_key(role: str) -> str:
    """The canonical form of a role name: lower case, words joined by underscores."""
    return re.sub(r"[^a-z0-9]+", "_", role.strip().lower()).strip("_")


def part_signature(part: str, *, options: Sequence[str] | None = None) -> Signature:
    """The signature a pattern gives an agent playing `part` (see `PARTS`)."""
    from kaizen.signatures import create_signature

    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; known parts: {', '.join(PARTS)}")
    task, spec = PARTS[part]
    if part == "voter":
        answer_type = (
            "Literal[" + ", ".join(json.dumps(str(o)) for o in options) + "]" if options else "str"
        )
        spec = spec.replace("{answer_type}", answer_type)
        if options:
            task = f"{task} Choose one of: {', '.join(map(str, options))}."
    return create_signature(spec, instructions=task)


def role_agent(
    role: str,
    part: str,
    *,
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    options: Sequence[str] | None = None,
    framework: Kaizen | None = None,
) -> Agent:
    """An agent named `name` (default: the role) playing `part` with the role's persona, created
    by `framework` (a `Kaizen` instance, whose defaults it inherits) when one is given."""
    from kaizen.agents.agent import Agent

    signature = part_signature(part, options=options)
    merged = dict(config or {})
    extra = merged.pop("instructions", None)
    instructions = " ".join(s for s in (persona(role), signature.instructions, extra) if s)
    settings = {**merged, "instructions": instructions}
    if framework is not None:
        agent = framework.create_agent(name or role_key(role), signature, settings)
    else:
        agent = Agent(name or role_key(role), signature, settings)
    return for_small_model(agent)


#: The outputs of the parts that are prose ("one or two sentences").
PROSE_OUTPUTS = frozenset({"argument", "rationale"})
#: The least a prose output holds on the embedded model (see `for_small_model`).
SMALL_MODEL_PROSE_MIN = 20


def for_small_model(agent: Agent) -> Agent:
    """`agent`, or, on the embedded model, a copy whose prose outputs (`PROSE_OUTPUTS`) ask for
    at least `SMALL_MODEL_PROSE_MIN` characters: the embedded model's grammar then makes them
    start like a sentence (`kaizen.llm.embedded.schema.PROSE_MIN_LENGTH`), so a 135M model's
    loops ("1.1.1.1", "][") cannot stand in for an argument. Other models get the part as
    written: the difference is documented in docs/models.md."""
    from dataclasses import replace

    from kaizen.llm.models import is_embedded_model
    from kaizen.signatures import Signature

    if not is_embedded_model(agent.config.model):
        return agent
    signature = agent.signature
    if not any(f.name in PROSE_OUTPUTS for f in signature.output_fields):
        return agent
    outputs = tuple(
        replace(f, constraints={**f.constraints, "min_length": SMALL_MODEL_PROSE_MIN})
        if f.name in PROSE_OUTPUTS and f.type is str
        else f
        for f in signature.output_fields
    )
    return agent.with_signature(Signature(signature.input_fields, outputs, signature.instructions))


def known_roles() -> list[str]:
    return sorted(PERSONAS)


__all__ = [
    "PARTS",
    "PERSONAS",
    "for_small_model",
    "known_roles",
    "part_signature",
    "persona",
    "role_agent",
]
