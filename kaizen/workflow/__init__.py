"""Graphs: `WorkflowBuilder` (declare, then `build()`), the immutable `Workflow`, its `Plan`.

Modules: `builder` (declaring), `specs` (what is declared), `validate` (the build pass),
`workflow` (the built graph), `plan` (its indexed form), `parameters` (routing run parameters).
"""

from kaizen.workflow.builder import ConnectionSpec, NodeSpec, WorkflowBuilder
from kaizen.workflow.workflow import Connection, Workflow

__all__ = ["Connection", "ConnectionSpec", "NodeSpec", "Workflow", "WorkflowBuilder"]
