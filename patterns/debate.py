"""`create_debate_workflow`: a debate unrolled into a graph, round by round, ending in a verdict.

Graph (ids): `topic` (when the topic is a builder argument) feeds every debater and the judge;
round r has one node per debater, `round<r>/<debater>`, and a collector `round<r>/arguments`
whose `said` (the arguments alone, without "name (for, confidence 0.80):") every debater of
round r+1 reads as `previous_arguments`. The last round's `arguments` (with who said what, on
which side) go to the judge (node id: the judge's name), which rules: position, rationale,
confidence. With `early_stop`, `round<r>/convergence` after each round but the last routes the
arguments either on to round r+1 or, when the positions converged, straight to the judge through
`verdict/arguments`; the later rounds are then skipped, each node with the reason. Nodes carry a
`group` ("round 1", ..., "verdict") so the rendered graph shows the rounds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from kaizen.agents.agent import AgentNode
from kaizen.nodes.base import MISSING, Port
from kaizen.patterns.aggregate import (
    ConvergenceNode,
    DebateRoundNode,
    FinalArgumentsNode,
    member_port,
)
from kaizen.patterns.budgeting import attach_budget
from kaizen.patterns.members import (
    Member,
    add_agent_node,
    config_with_model,
    first_output,
    resolve_members,
    set_group,
)
from kaizen.patterns.roles import persona, role_key
from kaizen.signatures import SignatureField

if TYPE_CHECKING:
    from kaizen.agents.agent import Agent
    from kaizen.agents.facade import Kaizen
    from kaizen.runtime.budget import Budget
    from kaizen.workflow.builder import WorkflowBuilder

JUDGE_ROLES = frozenset({"moderator", "judge"})
#: Debater roles that hold one side whatever the topic: their position is fixed to it (the
#: schema allows only that value) and their instructions say which side to argue.
SIDES: dict[str, str] = {
    "optimist": "for",
    "advocate": "for",
    "pessimist": "against",
    "critic": "against",
}
_SIDE_BRIEF = {
    "for": "You argue FOR the proposition: give a reason it is true or good.",
    "against": "You argue AGAINST the proposition: give a reason it is false or harmful.",
}
#: On the embedded model, a sided debater's argument opens with one of its side's phrases (its
#: grammar admits only those) and goes on in the model's own words. A 135M model otherwise
#: argues the popular side about a third of the time whatever its instructions say; an opening
#: that names a benefit or a risk sets the direction of the sentence it then writes.
SIDE_OPENINGS: dict[str, tuple[str, ...]] = {
    "for": ("The main benefit is that", "The advantage is that", "What we gain is that"),
    "against": ("The main risk is that", "The problem is that", "The downside is that"),
}
DEFAULT_JUDGE = "moderator"
# what the debate gives agents whose own signatures lack it
ARGUMENTS = SignatureField("arguments", list[str], "the debaters' final arguments, one per debater")
PREVIOUS_ARGUMENTS = SignatureField(
    "previous_arguments", list[str], "arguments of the previous round", default=[]
)


def create_debate_workflow(
    agents: Sequence[Agent | str],
    topic: str | None = None,
    rounds: int = 3,
    *,
    judge: Agent | str | None = None,
    early_stop: bool = False,
    convergence: float = 1.0,
    model: Any = None,
    agent_config: Mapping[str, Any] | None = None,
    budget: Budget | None = None,
    max_tokens: int | None = None,
    max_cost: float | None = None,
    framework: Kaizen | None = None,
    name: str = "debate",
) -> WorkflowBuilder:
    """A debate among `agents` over `rounds` rounds, ruled on by a judge.

    `agents` are `Agent`s or role names (see docs/patterns.md). The judge is `judge`, else the
    last agent when it is a judge (role or agent name `"moderator"` / `"judge"`, or an agent
    taking `arguments` but not `previous_arguments`), else a `"moderator"`. A role debater's
    signature is `topic, previous_arguments -> argument, position, confidence`. An `Agent`
    debater answers with its `argument` output (else `answer`, `result`, else its first); one
    whose signature lacks `previous_arguments` debates as a copy that also takes it, and a judge
    lacking `arguments` rules as a copy that takes them: the agents given stay as they are.
    `topic` set here becomes a constant node; left None, pass it at run time
    (`parameters={"topic": ...}`). `early_stop` ends the debate after the first round in which at
    least `convergence` (share of all debaters) hold the same position. `model` / `agent_config`
    configure the agents created from role names; `budget` (or `max_tokens` / `max_cost`) caps
    the model usage of a run of this workflow.
    `framework` (a `Kaizen` instance) creates the role-name agents, which inherit its config.
    """
    from kaizen.workflow.builder import WorkflowBuilder

    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise ValueError(f"create_debate_workflow: rounds must be an int >= 1, got {rounds!r}")
    if not 0.0 < convergence <= 1.0:
        raise ValueError(
            f"create_debate_workflow: convergence is a share of debaters in (0, 1], "
            f"got {convergence!r}"
        )
    config = config_with_model(agent_config, model)
    items = list(agents)
    if judge is None and items and _looks_like_judge(items[-1]):
        judge = items.pop()
    if len(items) < 2:
        raise ValueError(
            f"create_debate_workflow: a debate needs at least 2 debaters besides the judge, "
            f"got {len(items)}"
        )
    debaters = resolve_members(
        items, "debater", pattern="debate", agent_config=config, framework=framework
    )
    debaters = [
        _on_side(member, SIDES[role_key(item)])
        if isinstance(item, str) and role_key(item) in SIDES
        else member
        for item, member in zip(items, debaters, strict=True)
    ]
    (judge_member,) = resolve_members(
        [judge if judge is not None else DEFAULT_JUDGE],
        "judge",
        pattern="debate judge",
        agent_config=config,
        framework=framework,
    )
    judge_member = _hearing(_distinct(judge_member, debaters), ARGUMENTS)
    if rounds > 1:
        debaters = [_hearing(m, PREVIOUS_ARGUMENTS) for m in debaters]
    fields = {m.key: _debater_fields(m) for m in debaters}

    builder = WorkflowBuilder(name)
    if topic is not None:
        builder.add_node("ConstantNode", "topic", {"value": topic})
    final_id = "verdict/arguments"
    if early_stop:
        final = FinalArgumentsNode(final_id, {"rounds": rounds})
        set_group(final, "verdict")
        builder.add_node_instance(final)

    for r in range(1, rounds + 1):
        group = f"round {r}"
        collector_id = f"round{r}/arguments"
        previous = (
            (f"round{r - 1}/convergence", "next_said")
            if early_stop
            else (f"round{r - 1}/arguments", "said")
        )
        for member in debaters:
            node_id = f"round{r}/{member.key}"
            if r == 1:
                add_agent_node(builder, member.agent, node_id, group=group)
            else:
                node = DebaterNode(node_id, agent=member.agent, needs=("previous_arguments",))
                set_group(node, group)
                builder.add_node_instance(node)
            if topic is not None and member.has_input("topic"):
                builder.add_connection("topic", "value", node_id, "topic")
            for role, output in fields[member.key].items():
                builder.add_connection(node_id, output, collector_id, member_port(member.key, role))
            if r > 1:
                builder.add_connection(*previous, node_id, "previous_arguments")
        collector = DebateRoundNode(
            collector_id, {"round": r, "members": fields, "gated": early_stop and r > 1}
        )
        set_group(collector, group)
        builder.add_node_instance(collector)
        if early_stop and r > 1:  # a round after the debate stopped is skipped for that reason
            builder.add_connection(*previous, collector_id, "previous_arguments")
        if early_stop and r < rounds:
            gate_id = f"round{r}/convergence"
            gate = ConvergenceNode(
                gate_id, {"round": r, "agreement": convergence, "debaters": len(debaters)}
            )
            set_group(gate, group)
            builder.add_node_instance(gate)
            builder.add_connection(collector_id, "arguments", gate_id, "arguments")
            builder.add_connection(collector_id, "positions", gate_id, "positions")
            builder.add_connection(collector_id, "said", gate_id, "said")
            builder.add_connection(gate_id, "final_arguments", final_id, f"round{r}")
            if r > 1:
                builder.add_connection(f"round{r - 1}/convergence", "stopped", gate_id, "stopped")
        elif early_stop:
            builder.add_connection(collector_id, "arguments", final_id, f"round{r}")

    judge_id = judge_member.key
    add_agent_node(builder, judge_member.agent, judge_id, group="verdict")
    if topic is not None and judge_member.has_input("topic"):
        builder.add_connection("topic", "value", judge_id, "topic")
    if early_stop:
        builder.add_connection(final_id, "arguments", judge_id, "arguments")
    else:
        builder.add_connection(f"round{rounds}/arguments", "arguments", judge_id, "arguments")
    attach_budget(builder, budget, max_tokens=max_tokens, max_cost=max_cost)
    return builder


class DebaterNode(AgentNode):
    """A debater in round 2 or later: the previous round's arguments are a *required* input here
    (optional in the agent's signature), so the round is skipped when they never come."""

    def __init__(self, node_id: str, *, agent: Agent, needs: Sequence[str]) -> None:
        self.needs = tuple(needs)
        super().__init__(node_id, agent=agent)

    def make_ports(self) -> tuple[Iterable[Port], Iterable[Port]]:
        inputs, outputs = super().make_ports()
        required = [
            Port(p.name, p.type, MISSING, p.description) if p.name in self.needs else p
            for p in inputs
        ]
        return required, outputs


def _looks_like_judge(item: Agent | str) -> bool:
    """A judge: a role name or an agent named "moderator" / "judge", or an agent that takes
    `arguments` but not `previous_arguments`."""
    if isinstance(item, str):
        return role_key(item) in JUDGE_ROLES
    if role_key(item.name) in JUDGE_ROLES:
        return True
    inputs = item.signature.input_names
    return "arguments" in inputs and "previous_arguments" not in inputs


def _hearing(member: Member, field: SignatureField) -> Member:
    """`member`, or a copy of its agent whose signature also takes `field`: the debate hands an
    agent the arguments it must answer even when the agent was made for the topic alone."""
    if member.has_input(field.name):
        return member
    signature = member.signature.with_fields(inputs=[field])
    return Member(member.key, member.agent.with_signature(signature))


def _on_side(member: Member, side: str) -> Member:
    """A role-name debater bound to `side`: its instructions name the side, its `position`
    output can only be that side (a small model otherwise drifts to the popular one), and on
    the embedded model its `argument` opens with one of the side's phrases (`SIDE_OPENINGS`)."""
    from typing import Literal

    from kaizen.agents.agent import Agent
    from kaizen.llm.models import is_embedded_model
    from kaizen.signatures import Signature

    agent = member.agent
    if not member.has_output("position"):
        return member
    outputs = tuple(
        replace(f, type=Literal[side])
        if f.name == "position"
        else _opening_with(f, side)
        if f.name == "argument" and f.type is str and is_embedded_model(agent.config.model)
        else f
        for f in agent.signature.output_fields
    )
    # The side goes right after the persona's sentence: "You are a pessimist: ... You argue
    # AGAINST the proposition ...", then the debater's task.
    current = agent.config.effective_instructions or ""
    who = persona(member.key)
    # Tried on the embedded model and measured (benchmarks/demo_quality.py, --runs 10): a worked
    # example on another topic made it argue about the example's topic; naming the topic in the
    # brief ("You argue AGAINST this: ...") did not change the side contradictions (10/40 both);
    # describing the argument output by its side ("why the proposition is false or harmful")
    # made them worse (19/40).
    brief = _SIDE_BRIEF[side]
    if current.startswith(who):
        instructions = f"{who} {brief}{current[len(who) :]}"
    else:
        instructions = f"{brief} {current}".strip()
    signature = Signature(agent.signature.input_fields, outputs, instructions)
    config = agent.config.model_copy(update={"instructions": instructions, "system_prompt": None})
    return Member(member.key, Agent(agent.name, signature, config))


def opening_pattern(side: str) -> str:
    """The pattern of a sided argument on the embedded model: one of the side's openings
    (`SIDE_OPENINGS`), then a clause in the model's words (a letter first, no quote, backslash
    or control character), about 100 characters in all, as a prose output is."""
    openings = "|".join(SIDE_OPENINGS[side])
    return f'^({openings}) [A-Za-z][^"\\\\\\x00-\\x1f]{{15,70}}$'


def _opening_with(field: SignatureField, side: str) -> SignatureField:
    constraints = {k: v for k, v in field.constraints.items() if k != "min_length"}
    return replace(field, constraints={**constraints, "pattern": opening_pattern(side)})


def _distinct(judge: Member, debaters: Sequence[Member]) -> Member:
    taken = {m.key for m in debaters} | {"topic"}
    key, n = judge.key, 1
    while key in taken:
        n += 1
        key = f"{judge.key}_{n}"
    return Member(key, judge.agent)


def _debater_fields(member: Member) -> dict[str, str]:
    """Which outputs of a debater the round collects: argument, and position / confidence."""
    signature = member.signature
    fields = {"argument": first_output(signature, ("argument", "answer", "result"))}
    for role in ("position", "confidence"):
        if member.has_output(role):
            fields[role] = role
    return fields


__all__ = ["create_debate_workflow"]
