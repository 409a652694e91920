"""The audit log: append-only, hash-chained JSON lines, and `verify` for them.

Each entry holds the time, agent, action (``execute``, ``model_call``, ``tool_call``,
``access``, ``pause`` for each question a paused node asks a person, ``answer`` for each answer
and who gave it), the SHA-256 of the input and of the output (never the text itself), the user, the
model, tokens, cost and the decision (a status, an access decision), plus ``seq``, the previous
entry's hash (``prev``) and its own ``hash`` over all of that. Editing, deleting or reordering
any entry breaks the chain at that line: `verify(path)` (and ``kaizen audit verify PATH``) says
where. Truncating the tail leaves a valid shorter chain: keep the last hash elsewhere (it is
`AuditLog.last_hash`) to detect that too. Secrets never reach the log: inputs and outputs are
hashed, and free text (reasons) goes through the same redaction as error messages.

`agent.enable_audit_logging(path=None)` registers an `AuditLog` (a hook) on the agent; the
default file is ``$KAIZEN_HOME/audit.jsonl`` (``.kaizen/audit.jsonl``).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import threading
import time
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from kaizen.errors import AuditChainError
from kaizen.llm.retry import redact
from kaizen.moments import (
    ModelCallFinished,
    NodeFinished,
    NodeResumed,
    NodeWaiting,
    ToolCallFinished,
)
from kaizen.runtime.hooks import (
    ModelCallFinishHook,
    NodeFinishHook,
    NodeResumeHook,
    NodeWaitHook,
    ToolCallFinishHook,
)

__all__ = [
    "AuditLog",
    "acting_as",
    "current_user",
    "default_audit_path",
    "digest",
    "verify",
    "verify_audit",
]

GENESIS = "0" * 64
_user: ContextVar[str | None] = ContextVar("kaizen_user", default=None)
_files_lock = threading.Lock()


def current_user() -> str:
    """Who is acting: `kaizen.acting_as(name)` if set, else ``$KAIZEN_USER``, else the login."""
    user = _user.get() or os.environ.get("KAIZEN_USER", "").strip()
    if user:
        return user
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def default_audit_path() -> Path:
    home = os.environ.get("KAIZEN_HOME", "").strip()
    return Path(home or ".kaizen") / "audit.jsonl"


def digest(value: Any) -> str:
    """SHA-256 of `value` as canonical JSON (what an entry keeps instead of the value)."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _entry_hash(entry: Mapping[str, Any]) -> str:
    return digest({k: v for k, v in entry.items() if k != "hash"})


class AuditLog(
    ModelCallFinishHook, NodeFinishHook, NodeWaitHook, NodeResumeHook, ToolCallFinishHook
):
    """Appends the entries of one agent (`agent`) to `path`, continuing the file's chain."""

    name = "kaizen.audit"

    def __init__(self, agent: str, path: str | os.PathLike[str] | None = None) -> None:
        self.agent = agent
        self.path = Path(path) if path is not None else default_audit_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._inputs: dict[tuple[str, str], str] = {}  # (run, node) -> input hash

    @property
    def last_hash(self) -> str:
        last = GENESIS
        if self.path.exists():
            with self.path.open("rb") as file:
                for line in file:
                    if line.strip():
                        last = json.loads(line)["hash"]
        return last

    def append(
        self, action: str, *, input: Any = None, output: Any = None, model: str = "",
        tokens: int = 0, cost: float = 0.0, decision: str = "", run_id: str = "",
        reason: str = "",
    ) -> dict[str, Any]:  # fmt: skip
        """Add one entry (inputs and outputs are hashed here); returns it."""
        with _files_lock:
            seq, prev = self._tail()
            entry: dict[str, Any] = {
                "seq": seq, "time": time.time(), "agent": self.agent, "action": action,
                "run_id": run_id, "user": current_user(), "model": model,
                "input_hash": digest(input) if input is not None else None,
                "output_hash": digest(output) if output is not None else None,
                "tokens": tokens, "cost": cost, "decision": decision,
                "reason": redact(reason), "prev": prev,
            }  # fmt: skip
            entry["hash"] = _entry_hash(entry)
            with self.path.open("a", encoding="utf-8") as file:
                file.write(json.dumps(entry, sort_keys=True) + "\n")
        return entry

    def _tail(self) -> tuple[int, str]:
        seq, prev = 0, GENESIS
        if self.path.exists():
            with self.path.open("rb") as file:
                for line in file:
                    if line.strip():
                        last = json.loads(line)
                        seq, prev = last["seq"] + 1, last["hash"]
        return seq, prev

    def remember_input(self, run_id: str, node_id: str, inputs: Any) -> None:
        self._inputs[(run_id, node_id)] = digest(inputs)

    # -- hooks ----------------------------------------------------------------------------------

    def on_model_call_finish(self, event: ModelCallFinished) -> None:
        messages_hash = self._inputs.get((event.run_id, event.node_id))
        reply, error, usage = event.reply, event.error, event.usage
        self.append(
            "model_call", input=messages_hash, output=None if reply is None else reply.text,
            model=event.model, tokens=usage.total_tokens, cost=usage.cost, run_id=event.run_id,
            decision="ok" if error is None else f"failed: {type(error).__name__}",
        )  # fmt: skip

    def on_tool_call_finish(self, event: ToolCallFinished) -> None:
        record = event.record
        self.append(
            "tool_call", input=record.arguments, output=record.output, model=event.tool,
            run_id=event.run_id, decision="ok" if record.error is None else "failed",
        )  # fmt: skip

    def on_node_finish(self, event: NodeFinished) -> None:
        run_id, status, error = event.run_id, event.status, event.error
        input_hash = self._inputs.pop((run_id, event.node_id), None)
        decision = str(status) if error is None else f"{status}: {type(error).__name__}"
        self.append(
            "execute", input=input_hash, output=event.outputs, run_id=run_id, decision=decision
        )

    def on_node_wait(self, event: NodeWaiting) -> None:
        for asked in event.interrupts:
            what = f"{asked.kind} {asked.id}" + (f" of tool {asked.tool}" if asked.tool else "")
            self.append(
                "pause", input=asked.payload if asked.args is None else asked.args,
                run_id=event.run_id, decision="waiting", reason=what,
            )  # fmt: skip

    def on_node_resume(self, event: NodeResumed) -> None:
        for given in event.answered:
            self.append(
                "answer", input=given.payload, output=given.answer, run_id=event.run_id,
                decision=f"answered by {given.answered_by or 'unknown'}", reason=given.id,
            )  # fmt: skip


def verify(path: str | os.PathLike[str]) -> int:
    """Check the chain of the audit file at `path`; returns the number of entries, or raises
    `AuditChainError` naming the first line that was edited, deleted or moved."""
    prev, expected_seq, count = GENESIS, 0, 0
    with Path(path).open(encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                raise AuditChainError(f"{path}:{number}: not a JSON entry", line=number) from None
            if entry.get("hash") != _entry_hash(entry):
                raise AuditChainError(
                    f"{path}:{number}: entry was edited (its hash does not match its content)",
                    line=number,
                )
            if entry.get("prev") != prev or entry.get("seq") != expected_seq:
                raise AuditChainError(
                    f"{path}:{number}: chain broken (expected entry {expected_seq} after "
                    f"{prev[:12]}...): an entry before it was deleted, or entries were reordered",
                    line=number,
                )
            prev, expected_seq, count = entry["hash"], expected_seq + 1, count + 1
    return count


class acting_as:
    """``with kaizen.acting_as("alice"):`` executions inside are audited (and policed) as
    alice."""

    def __init__(self, user: str) -> None:
        self.user = user

    def __enter__(self) -> str:
        self._token = _user.set(self.user)
        return self.user

    def __exit__(self, *exc_info: object) -> None:
        _user.reset(self._token)


verify_audit = verify  # as `kaizen.verify_audit`
