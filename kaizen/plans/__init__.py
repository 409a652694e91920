"""Plans that run as graphs: the planning strategy of an agent (config ``strategy="plan"``).

`kaizen.plans.plan` is a plan as data (steps, references, checks), `kaizen.plans.compile` turns
one into a `WorkflowBuilder` (`compile_plan`), `kaizen.plans.nodes` holds the nodes it is made
of (a step with recovery, the synthesis), and `kaizen.plans.strategy` is the agent's flow:
plan, check, run, recover, validate, re-plan. See docs/plans.md.
"""

from kaizen.plans.compile import compile_plan
from kaizen.plans.plan import Plan, PlanStep, check_plan

__all__ = ["Plan", "PlanStep", "check_plan", "compile_plan"]
