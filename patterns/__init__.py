"""Multi-agent patterns as graph builders: pipeline, debate, consensus, supervisor-worker.

Each function returns a `WorkflowBuilder`: extend it, connect it into a larger graph, build it,
render it, run it with any runtime. Agents are `Agent` objects or role names
(`kaizen.patterns.roles`).
"""

from kaizen.patterns.budgeting import attach_budget
from kaizen.patterns.consensus import create_consensus_workflow
from kaizen.patterns.debate import create_debate_workflow
from kaizen.patterns.decision import (
    DECISION_RULES,
    ConsensusResult,
    Failure,
    Vote,
    decide,
)
from kaizen.patterns.pipeline import create_pipeline
from kaizen.patterns.roles import PERSONAS, known_roles, role_agent
from kaizen.patterns.supervisor import create_supervisor_agent

__all__ = [
    "DECISION_RULES",
    "PERSONAS",
    "ConsensusResult",
    "Failure",
    "Vote",
    "attach_budget",
    "create_consensus_workflow",
    "create_debate_workflow",
    "create_pipeline",
    "create_supervisor_agent",
    "decide",
    "known_roles",
    "role_agent",
]
