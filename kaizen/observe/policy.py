"""Access policies: who may run an agent, with which model and tools, and approvals.

A policy is a name (``"allow_all"``, ``"deny_all"``, ``"team_lead_approval_required"``) or a
callable ``(AccessRequest) -> Decision``: `allow()`, `deny(reason)` or `require_approval(who)`;
`per_user(...)` restricts models, tools and budgets per user (a user's `kaizen.Budget` is
charged with the usage of each execution run for them; once it is used up, their next
execution is denied). An agent with an `AccessPolicy` among its hooks
(``agent.add_hook(AccessPolicy(policy))``, which is what ``agent.set_access_policy(policy)``
does) checks it each time its node starts, once its inputs are validated and before any model
call:

- deny: the node fails with `AccessDeniedError` naming the reason;
- require approval: in a workflow, the node pauses for a person (`kaizen.interrupts`: an
  interrupt of kind "approval" whose payload names the approver, the agent and the user), as
  any pause does: the node WAITS, neither failed nor retried, under every failure policy, and
  the approval is also recorded as pending in the run's store (``approvals``: the store given
  to `set_access_policy`, else the store the runtime checkpoints into, else the default store).
  A run on a checkpointing runtime ends with status ``waiting_approval``, its finished nodes
  checkpointed; `approve(run_id, node_id, by=..., store=...)` (or ``kaizen approve RUN NODE
  --by NAME --store PATH``) answers the node's approval and `runtime.resume(run_id, workflow)`
  finishes the run (or `runtime.resume(run_id, workflow, answers={"<node>/<i>": True})` in
  one step). A direct `agent.execute()` raises `ApprovalRequired` (its `run_id` and `node_id`
  say what to approve), as the ADR documents.

Every decision is written to the agent's audit log when it has one.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kaizen.errors import AccessDeniedError, ApprovalRequired, ConfigError, KaizenError
from kaizen.flow import Flow
from kaizen.interrupts import NodePaused, ask_approval, resumption
from kaizen.observe.audit import AuditLog, current_user
from kaizen.runtime.budget import Budget
from kaizen.runtime.context import current_node_context
from kaizen.runtime.hooks import Middleware
from kaizen.store.db import Store, StorePath, store_of_run
from kaizen.store.interrupts import ANSWER_APPROVALS, open_approvals

_T = TypeVar("_T")

__all__ = [
    "AccessPolicy",
    "AccessRequest",
    "Allow",
    "Decision",
    "Deny",
    "RequireApproval",
    "admit",
    "allow",
    "approval_status",
    "approve",
    "charging",
    "check_access",
    "deny",
    "per_user",
    "policy_from",
    "require_approval",
]


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """What a policy decides on: which agent wants to run, for whom, with what."""

    agent: str
    user: str
    model: str
    tools: tuple[str, ...] = ()
    inputs: Mapping[str, Any] = field(default_factory=dict, repr=False)
    run_id: str = ""
    node_id: str = ""


@dataclass(frozen=True, slots=True)
class Allow:
    budget: Budget | None = None  # charged with this execution's usage (per-user budgets)


@dataclass(frozen=True, slots=True)
class Deny:
    reason: str


@dataclass(frozen=True, slots=True)
class RequireApproval:
    who: str


Decision = Allow | Deny | RequireApproval
Policy = Callable[[AccessRequest], Decision]


def allow() -> Allow:
    return Allow()


def deny(reason: str) -> Deny:
    return Deny(reason)


def require_approval(who: str) -> RequireApproval:
    return RequireApproval(who)


def allow_all(request: AccessRequest) -> Decision:
    return Allow()


def deny_all(request: AccessRequest) -> Decision:
    return Deny("the access policy denies every execution")


def team_lead_approval_required(request: AccessRequest) -> Decision:
    return RequireApproval("team_lead")


# functions, not lambdas: an agent with a named policy pickles (to a worker, a Ray actor)
NAMED: dict[str, Policy] = {
    "allow_all": allow_all,
    "deny_all": deny_all,
    "team_lead_approval_required": team_lead_approval_required,
}


def per_user(rules: Mapping[str, Mapping[str, Any]], *, others: Decision | None = None) -> Policy:
    """A policy from per-user rules: ``{"alice": {"models": [...], "tools": [...], "budget":
    kaizen.Budget(max_cost=1.0)}}``; a user may use only the models and tools listed (a missing
    key: any), and only while their budget lasts (it is charged after each of their
    executions, so one execution may overrun it; the next is denied). Users without rules get
    `others` (default: denied)."""
    for user, rule in rules.items():
        budget = rule.get("budget")
        if budget is not None and not isinstance(budget, Budget):
            raise ConfigError(
                f"per_user: the budget of user {user!r} must be a kaizen.Budget, got "
                f"{type(budget).__name__}"
            )

    def decide(request: AccessRequest) -> Decision:
        rule = rules.get(request.user)
        if rule is None:
            return others or Deny(f"user {request.user!r} has no access rule")
        models = rule.get("models")
        if models is not None and request.model not in set(models):
            return Deny(f"user {request.user!r} may not use model {request.model!r}")
        tools = rule.get("tools")
        if tools is not None:
            refused = sorted(set(request.tools) - set(tools))
            if refused:
                return Deny(f"user {request.user!r} may not use tools {refused}")
        budget = rule.get("budget")
        if budget is not None:
            spent = budget.exceeded()
            if spent is not None:
                return Deny(f"user {request.user!r} has used up their budget ({spent})")
        return Allow(budget)

    return decide


def policy_from(policy: str | Policy) -> Policy:
    if isinstance(policy, str):
        try:
            return NAMED[policy]
        except KeyError:
            raise ConfigError(
                f"unknown access policy {policy!r}; use one of {sorted(NAMED)} or a callable "
                "(request) -> allow() | deny(reason) | require_approval(who)"
            ) from None
    if not callable(policy):
        raise ConfigError(f"an access policy is a name or a callable, got {policy!r}")
    return policy


class AccessPolicy(Middleware):
    """An access policy on an agent, attached as a hook: ``agent.add_hook(AccessPolicy(policy,
    store=...))`` (or ``agent.set_access_policy(policy, store=...)``, which replaces the one it
    had). `policy`: a name in `NAMED` or a callable ``(AccessRequest) -> Decision``; `store`:
    where approvals live (default: the store of the run).

    It steers the agent's node from inside rather than through `before_node`: a decision needs
    the agent's model and tools and its validated inputs, which a node call does not carry, so
    the agent's node asks `admit` (through `Agent.admit`) before its first model call."""

    def __init__(self, policy: str | Policy, *, store: StorePath | Store | None = None) -> None:
        self.decide = policy_from(policy)
        self.store = store

    def __repr__(self) -> str:
        return f"AccessPolicy({getattr(self.decide, '__name__', self.decide)!r})"


def gates_among(hooks: tuple[object, ...]) -> tuple[AccessPolicy | None, AuditLog | None]:
    """The access policy and the audit log among an agent's hooks (the first of each)."""
    policy = next((hook for hook in hooks if isinstance(hook, AccessPolicy)), None)
    audit = next((hook for hook in hooks if isinstance(hook, AuditLog)), None)
    return policy, audit


def approval_status(store: Store, run_id: str, node_id: str) -> tuple[str, str | None] | None:
    rows = store.read(
        "SELECT status, decided_by FROM approvals WHERE run_id = ? AND node_id = ?",
        (run_id, node_id),
    )
    return (rows[0][0], rows[0][1]) if rows else None


def approve(
    run_id: str, node_id: str, *, by: str, store: StorePath | Store | None = None,
    approved: bool = True, reason: str | None = None,
) -> None:  # fmt: skip
    """Approve (or, `approved=False`, deny, with a `reason`) node `node_id` of run `run_id`,
    by `by`: its access-policy approval and every approval it waits for (a tool call's). Then
    `runtime.resume(run_id, workflow)` runs it (``kaizen approve ... --resume module:attr``)."""
    opened = Store.open(store)
    if approval_status(opened, run_id, node_id) is None and not open_approvals(
        opened, run_id, node_id
    ):
        raise KaizenError(
            f"run {run_id!r} has no approval pending for node {node_id!r} in {opened.path}; "
            "check the run id and node id (kaizen runs show RUN)"
        )
    decided = time.time()
    answer: dict[str, Any] = {"approved": approved, "by": by}
    if reason:
        answer["reason"] = reason
    with opened.write() as db:
        db.execute(
            "UPDATE approvals SET status = ?, decided_by = ?, decided = ? "
            "WHERE run_id = ? AND node_id = ?",
            ("approved" if approved else "denied", by, decided, run_id, node_id),
        )
        # the node's open approval interrupts (a policy's, a tool's) take the same answer
        db.execute(ANSWER_APPROVALS, (json.dumps(answer), by, decided, run_id, node_id))


def check_access(
    policy: Policy,
    request: AccessRequest,
    store: StorePath | Store | None = None,
    *,
    pause: bool = False,
) -> tuple[str, str, Budget | None]:
    """Apply `policy` to `request`: returns (decision, detail, the budget to charge) when the
    node may run, raises `AccessDeniedError` otherwise. An approval still missing is recorded
    as pending, then, with `pause` (a workflow's node), asked as an interrupt (`NodePaused`),
    else raised as `ApprovalRequired`."""
    decision = policy(request)
    if isinstance(decision, Allow):
        return "allow", "", decision.budget
    if isinstance(decision, Deny):
        raise AccessDeniedError(
            f"agent {request.agent!r} may not run for user {request.user!r}: {decision.reason}",
            agent=request.agent,
            reason=decision.reason,
        )
    if not isinstance(decision, RequireApproval):
        raise ConfigError(
            f"access policy returned {decision!r}; return allow(), deny(reason) or "
            "require_approval(who)"
        )
    opened = store_of_run(store)  # the run's store, unless the policy was given one
    if pause and resumption() is not None:
        return _paused_for(decision.who, request, opened)
    status = approval_status(opened, request.run_id, request.node_id)
    if status is not None and status[0] == "approved":
        return "approved", f"approved by {status[1]}", None
    if status is not None and status[0] == "denied":
        raise AccessDeniedError(
            f"agent {request.agent!r}: approval denied by {status[1]}",
            agent=request.agent,
            reason=f"denied by {status[1]}",
        )
    if status is None:
        with opened.write() as db:
            db.execute(
                "INSERT INTO approvals (run_id, node_id, approver, status, requested) "
                "VALUES (?, ?, ?, 'pending', ?)",
                (request.run_id, request.node_id, decision.who, time.time()),
            )
    raise ApprovalRequired(
        f"agent {request.agent!r} (node {request.node_id!r} of run {request.run_id!r}) needs "
        f"{decision.who}'s approval: kaizen approve {request.run_id} {request.node_id} --by NAME",
        agent=request.agent,
        approver=decision.who,
        node_id=request.node_id,
        run_id=request.run_id,
    )


def _paused_for(who: str, request: AccessRequest, store: Store) -> tuple[str, str, Budget | None]:
    """The node asks `who`'s approval as an interrupt: run on with the answer, or pause."""
    if approval_status(store, request.run_id, request.node_id) is None:
        with store.write() as db:  # pending, where `kaizen approve RUN NODE` finds it
            db.execute(
                "INSERT INTO approvals (run_id, node_id, approver, status, requested) "
                "VALUES (?, ?, ?, 'pending', ?)",
                (request.run_id, request.node_id, who, time.time()),
            )
    payload = {
        "question": f"May agent {request.agent!r} run for user {request.user!r}?",
        "access_policy": who,
        "agent": request.agent,
        "user": request.user,
    }
    answer = ask_approval(payload)  # pauses the node until someone answers
    if not answer.approved:
        by = answer.by or "the approver"
        reason = f"denied by {by}" + (f": {answer.reason}" if answer.reason else "")
        raise AccessDeniedError(
            f"agent {request.agent!r}: approval {reason}", agent=request.agent, reason=reason
        )
    return "approved", f"approved by {answer.by or 'the approver'}", None


def admit(
    agent: str,
    inputs: Mapping[str, Any],
    *,
    model: Callable[[], str],
    tools: tuple[str, ...],
    policy: AccessPolicy | None,
    audit: AuditLog | None,
    pause: bool = False,
) -> Budget | None:
    """Before agent `agent`'s node runs: its inputs remembered for the audit log, the access
    policy's decision applied and audited. `model` gives the model's name (resolved only when
    there is a policy to ask). Returns the user's budget to charge with this execution's usage
    (`charging`), if the policy gives one; raises as `check_access` does."""

    context = current_node_context()
    run_id = context.run_id if context is not None else ""
    node_id = context.node_id if context is not None else agent
    if audit is not None:
        audit.remember_input(run_id, node_id, dict(inputs))
    if policy is None:
        return None
    request = AccessRequest(agent, current_user(), model(), tools, inputs, run_id, node_id)
    try:
        decision, detail, budget = check_access(policy.decide, request, policy.store, pause=pause)
    except NodePaused:
        if audit is not None:
            audit.append("access", input=dict(inputs), run_id=run_id,
                         decision="ApprovalRequired", reason="waiting for approval")  # fmt: skip
        raise
    except KaizenError as exc:
        if audit is not None:
            reason = getattr(exc, "reason", "") or f"approval by {getattr(exc, 'approver', '')}"
            audit.append("access", input=dict(inputs), run_id=run_id,
                         decision=type(exc).__name__, reason=reason)  # fmt: skip
        raise
    if audit is not None:
        audit.append("access", input=dict(inputs), run_id=run_id, decision=decision,
                     reason=detail)  # fmt: skip
    return budget


def charging(flow: Flow[_T], budget: Budget) -> Flow[_T]:
    """`flow`, then the model usage its node added charged to `budget` (a user's, from the
    access policy), whether it succeeded or not."""
    context = current_node_context()
    node_run = context.record.nodes.get(context.node_id) if context is not None else None
    before = dataclasses.replace(node_run.usage) if node_run is not None else None
    try:
        return (yield from flow)
    finally:
        if node_run is not None and before is not None:
            budget.charge(node_run.usage.since(before))
