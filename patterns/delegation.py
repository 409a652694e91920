"""Routing nodes of the supervisor-worker pattern.

- `AssignNode` turns the supervisor's plan into one task per worker; a worker with no task gets
  nothing on its port, so it is skipped (visibly, with the reason) rather than run idle.
- `WorkerResultsNode` gathers the workers' results (a worker that failed is listed as missing);
  with revisions, a revised result replaces the first one.
- `RevisionRouteNode` sends the reviewer's feedback to the workers it names, with their task and
  first result; when the review approves, no worker is asked again.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from kaizen.nodes.base import Node, Port
from kaizen.patterns.roles import role_key

REVISED = "__revised"
_WORKER_KEYS = ("worker", "agent", "name", "assignee", "who")
_TASK_KEYS = ("subtask", "task", "description", "instruction", "assignment")
_FEEDBACK_KEYS = ("feedback", "instruction", "reason", "fix", "comment")


def _pick(entry: Any, keys: Sequence[str]) -> str | None:
    if not isinstance(entry, Mapping):
        return None
    lowered = {str(k).lower(): v for k, v in entry.items()}
    for key in keys:
        value = lowered.get(key)
        if value is not None and str(value).strip():
            return str(value).strip()
    return None


def match_worker(given: str, workers: Mapping[str, str]) -> str | None:
    """The worker key that `given` names (by key, agent name, or close spelling), or None."""
    wanted = role_key(given)
    names = {role_key(name): key for key, name in workers.items()} | {
        role_key(key): key for key in workers
    }
    if wanted in names:
        return names[wanted]
    for name, key in names.items():
        if name and name in wanted.split("_"):
            return key
    close = difflib.get_close_matches(wanted, list(names), n=1, cutoff=0.75)
    return names[close[0]] if close else None


class AssignNode(Node):
    """One task per worker from the plan. Config: `workers` ({key: agent name}), `mode`
    ("automatic": input `assignments`, a list of {worker, subtask}; "round_robin": input
    `subtasks`, dealt to the workers in turn). Outputs: a port per worker key (its task; absent
    for an unassigned worker), `tasks` ({key: task}), `unassigned` and `unmatched` (plan entries
    naming no known worker)."""

    type_name = "Assign"
    config_keys: ClassVar[frozenset[str] | None] = frozenset({"workers", "mode"})

    def make_ports(self) -> tuple[Iterable[Port], Iterable[Port]]:
        if self.config.get("mode", "automatic") == "round_robin":
            inputs = [Port("subtasks", list[str], description="the subtasks to deal out")]
        else:
            inputs = [Port("assignments", Any, description="[{worker, subtask}, ...]")]
        outputs = [Port(key, str, description=f"the task of {key}") for key in self.workers]
        outputs += [
            Port("tasks", dict[str, str]),
            Port("unassigned", list[str]),
            Port("unmatched", list[str]),
        ]
        return inputs, outputs

    @property
    def workers(self) -> Mapping[str, str]:
        workers: Mapping[str, str] = self.config["workers"]
        return workers

    def run(self, **inputs: Any) -> dict[str, Any]:
        tasks: dict[str, list[str]] = {}
        unmatched: list[str] = []
        keys = list(self.workers)
        if "subtasks" in inputs:
            subtasks = [str(s).strip() for s in inputs["subtasks"] or [] if str(s).strip()]
            for i, text in enumerate(subtasks):
                tasks.setdefault(keys[i % len(keys)], []).append(text)
        else:
            for entry in inputs.get("assignments") or []:
                worker, subtask = _pick(entry, _WORKER_KEYS), _pick(entry, _TASK_KEYS)
                key = match_worker(worker, self.workers) if worker else None
                if key is None or subtask is None:
                    unmatched.append(str(entry))
                else:
                    tasks.setdefault(key, []).append(subtask)
        if not tasks:
            raise ValueError(
                f"{self.id}: the supervisor's plan gives no subtask to any worker "
                f"(workers: {', '.join(keys)}; plan entries not understood: {unmatched or 'none'})"
            )
        joined = {key: "\n".join(parts) for key, parts in tasks.items()}
        return {
            **joined,
            "tasks": joined,
            "unassigned": [key for key in keys if key not in joined],
            "unmatched": unmatched,
        }


class WorkerResultsNode(Node):
    """Gathers results. Config: `workers` (keys in order), `revised` (bool: also take
    `<key>__revised`, which wins). Outputs: `results` ("key: result" lines), `by_worker`,
    `missing` (workers that produced nothing, failed or unassigned)."""

    type_name = "WorkerResults"
    accepts_partial_inputs: ClassVar[bool] = True
    config_keys: ClassVar[frozenset[str] | None] = frozenset({"workers", "revised"})

    def make_ports(self) -> tuple[Iterable[Port], Iterable[Port]]:
        keys = list(self.config["workers"])
        inputs = [Port(key, Any) for key in keys]
        if self.config.get("revised"):
            inputs += [Port(key + REVISED, Any) for key in keys]
        outputs = (
            Port("results", list[str]),
            Port("by_worker", dict[str, str]),
            Port("missing", list[str]),
        )
        return inputs, outputs

    def run(self, **inputs: Any) -> dict[str, Any]:
        by_worker: dict[str, str] = {}
        missing: list[str] = []
        for key in self.config["workers"]:
            value = inputs.get(key + REVISED, inputs.get(key))
            if value is None:
                missing.append(key)
            else:
                by_worker[key] = str(value).strip()
        results = [f"{key}: {text}" for key, text in by_worker.items()]
        return {"results": results, "by_worker": by_worker, "missing": missing}


class RevisionRouteNode(Node):
    """Routes the review's feedback. Config: `workers` ({key: agent name}). Inputs: `approved`,
    `revisions` ([{worker, feedback}]), `tasks` and `by_worker` (task and first result per
    worker). Outputs a revision task on the port of each worker to redo, and `requested`."""

    type_name = "RevisionRoute"
    config_keys: ClassVar[frozenset[str] | None] = frozenset({"workers"})

    def make_ports(self) -> tuple[Iterable[Port], Iterable[Port]]:
        inputs = (
            Port("approved", bool),
            Port("revisions", Any, default=()),
            Port("tasks", dict[str, str]),
            Port("by_worker", dict[str, str]),
        )
        outputs = [Port(key, str) for key in self.config["workers"]]
        outputs.append(Port("requested", list[str]))
        return inputs, outputs

    def run(self, **inputs: Any) -> dict[str, Any]:
        if inputs["approved"]:
            return {"requested": []}
        tasks: Mapping[str, str] = inputs["tasks"]
        results: Mapping[str, str] = inputs["by_worker"]
        feedback: dict[str, list[str]] = {}
        for entry in inputs.get("revisions") or ():
            worker = _pick(entry, _WORKER_KEYS)
            key = match_worker(worker, self.config["workers"]) if worker else None
            if key is not None and key in tasks:
                feedback.setdefault(key, []).append(_pick(entry, _FEEDBACK_KEYS) or "improve it")
        if not feedback:  # not approved, but nobody named: every worker with a result redoes it
            generic = "The supervisor did not approve the results; improve yours."
            feedback = {key: [generic] for key in tasks if key in results}
        routed = {
            key: (
                f"Revise your work.\nYour task: {tasks[key]}\n"
                f"Your result: {results.get(key, '(none)')}\nFeedback: {' '.join(notes)}"
            )
            for key, notes in feedback.items()
        }
        return {**routed, "requested": list(routed)}


__all__ = ["AssignNode", "RevisionRouteNode", "WorkerResultsNode", "match_worker"]
