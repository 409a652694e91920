"""Pauses for a person in the store: what a waiting node asked, the answers and who gave them,
and the state it saved (`kaizen.interrupts` has the contract; docs/human-in-the-loop.md).

A run whose node pauses is stored with status ``waiting``; each interrupt is a row of
``interrupts`` (id ``"<node_id>/<index>"``), the node's saved state a row of ``paused_nodes``.
`answer` takes a resume's answers in one write transaction: it checks them all first (the run
waits, every id was asked and is still open, every answer matches its schema) and raises a typed
error that changes nothing when one does not hold; then it stores the answers and moves the run
from ``waiting`` to ``running``, compare-and-set, so of two resumes (or a resume and a cancel)
racing for one waiting run exactly one wins. `cancel_waiting` is the cancel side of that race.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from kaizen.errors import (
    InterruptAnswerError,
    RunNotFoundError,
    RunNotWaitingError,
    UnknownInterruptError,
)
from kaizen.interrupts import Interrupt
from kaizen.store.db import Store
from kaizen.store.encode import decode, encode

__all__ = [
    "ANSWER_APPROVALS",
    "WAITING_STATUSES",
    "Resumes",
    "answer",
    "cancel_waiting",
    "check_answer",
    "load_interrupts",
    "load_resumes",
    "open_approvals",
    "save_pause",
]

# what the store calls a run that waits for a person (``waiting_approval``: for an access
# policy's approval, as the ADR names it)
WAITING_STATUSES = ("waiting", "waiting_approval")

# node id -> (its answers by interrupt index, the state it saved)
Resumes = dict[str, tuple[dict[int, Any], Any]]

_COLUMNS = (
    "id, node_id, idx, kind, payload, schema, tool, args, created, answered, answer,"
    " answered_by, answered_at"
)


def _dump(value: Any, node_id: str, what: str) -> str:
    return json.dumps(encode(value, node_id=node_id, port=what))


def _load(text: str | None) -> Any:
    return None if text is None else decode(json.loads(text))


def save_pause(
    store: Store, run_id: str, node_id: str, asked: Iterable[Interrupt], state: Any
) -> None:
    """Store what node `node_id` asked when it paused, and the state it saved (one transaction).
    An interrupt already stored (asked again by a re-run) keeps its row and answer."""
    rows = [
        (
            run_id, i.id, i.node_id, i.index, i.kind, _dump(i.payload, node_id, "payload"),
            json.dumps(i.schema) if i.schema is not None else None, i.tool,
            _dump(i.args, node_id, "args") if i.args is not None else None, i.created_at,
        )
        for i in asked
    ]  # fmt: skip
    saved = _dump(state, node_id, "state")
    with store.write() as db:
        db.executemany(
            "INSERT INTO interrupts (run_id, id, node_id, idx, kind, payload, schema, tool, args,"
            " created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            rows,
        )
        db.execute(
            "INSERT INTO paused_nodes (run_id, node_id, state) VALUES (?, ?, ?)"
            " ON CONFLICT (run_id, node_id) DO UPDATE SET state = excluded.state",
            (run_id, node_id, saved),
        )


def load_interrupts(store: Store, run_id: str) -> list[Interrupt]:
    """Every interrupt of run `run_id`, answered or not, in the order asked."""
    rows = store.read(
        f"SELECT {_COLUMNS} FROM interrupts WHERE run_id = ? ORDER BY created, node_id, idx",
        (run_id,),
    )
    return [_interrupt(row) for row in rows]


def _interrupt(row: tuple[Any, ...]) -> Interrupt:
    return Interrupt(
        id=row[0],
        node_id=row[1],
        index=row[2],
        kind=row[3],
        payload=_load(row[4]),
        schema=json.loads(row[5]) if row[5] is not None else None,
        tool=row[6],
        args=_load(row[7]),
        created_at=row[8],
        answered=bool(row[9]),
        answer=_load(row[10]),
        answered_by=row[11],
        answered_at=row[12],
    )


def load_resumes(store: Store, run_id: str) -> Resumes:
    """The nodes of run `run_id` that paused: their answers so far and the state they saved."""
    resumes: Resumes = {}
    for node_id, state in store.read(
        "SELECT node_id, state FROM paused_nodes WHERE run_id = ?", (run_id,)
    ):
        resumes[node_id] = ({}, _load(state))
    for node_id, index, answer_text in store.read(
        "SELECT node_id, idx, answer FROM interrupts WHERE run_id = ? AND answered = 1", (run_id,)
    ):
        resumes.setdefault(node_id, ({}, None))[0][index] = _load(answer_text)
    return resumes


def answer(
    store: Store, run_id: str, answers: Mapping[str, Any], by: str | None = None
) -> list[Interrupt]:
    """Take `answers` (interrupt id -> answer) for waiting run `run_id` and mark the run
    running (see the module docstring); returns the interrupts answered. Raises, changing
    nothing: `RunNotFoundError`, `RunNotWaitingError` (finished, cancelled, or resumed by
    someone else first), `UnknownInterruptError` (an id the run never asked, or answered
    already), `InterruptAnswerError` (an answer that does not match the interrupt's schema)."""
    now = time.time()
    with store.write() as db:
        found = db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if found is None:
            raise RunNotFoundError(
                f"no run {run_id!r} in store {store.path}: a run can be resumed with answers "
                "only when it was checkpointed (LocalRuntime(checkpoint=True)); `kaizen runs "
                "list` shows what is there",
                path=store.path,
            )
        status = found[0]
        if status not in WAITING_STATUSES:
            raise RunNotWaitingError(_not_waiting(run_id, status), run_id=run_id, status=status,
                                     path=store.path)  # fmt: skip
        rows = db.execute(
            f"SELECT {_COLUMNS} FROM interrupts WHERE run_id = ?", (run_id,)
        ).fetchall()
        asked = {row[0]: _interrupt(row) for row in rows}
        still_open = sorted(i.id for i in asked.values() if not i.answered)
        taken: list[Interrupt] = []
        for interrupt_id, value in answers.items():
            interrupt = asked.get(interrupt_id)
            if interrupt is None or interrupt.answered:
                why = "was answered already" if interrupt is not None else "was never asked"
                raise UnknownInterruptError(
                    f"run {run_id!r}: interrupt {interrupt_id!r} {why}; the open ones are "
                    f"{', '.join(still_open) or 'none'}",
                    run_id=run_id, interrupt_id=interrupt_id, open=still_open, path=store.path,
                )  # fmt: skip
            check_answer(run_id, interrupt, value, store.path)
            taken.append(interrupt)
        db.executemany(
            "UPDATE interrupts SET answered = 1, answer = ?, answered_by = ?, answered_at = ?"
            " WHERE run_id = ? AND id = ?",
            [(_dump(answers[i.id], i.node_id, "answer"), by, now, run_id, i.id) for i in taken],
        )
        moved = db.execute(
            "UPDATE runs SET status = 'running' WHERE run_id = ? AND status IN (?, ?)",
            (run_id, *WAITING_STATUSES),
        ).rowcount
        if moved != 1:  # (the write lock makes this unreachable; kept as the invariant)
            raise RunNotWaitingError(_not_waiting(run_id, "running"), run_id=run_id,
                                     status="running", path=store.path)  # fmt: skip
    return [
        dataclasses.replace(i, answer=answers[i.id], answered=True, answered_by=by,
                            answered_at=now)
        for i in taken
    ]  # fmt: skip


def open_approvals(store: Store, run_id: str, node_id: str) -> list[str]:
    """The ids of node `node_id`'s approval interrupts that wait for an answer."""
    rows = store.read(
        "SELECT id FROM interrupts WHERE run_id = ? AND node_id = ? AND kind = 'approval'"
        " AND answered = 0",
        (run_id, node_id),
    )
    return [row[0] for row in rows]


ANSWER_APPROVALS = (
    "UPDATE interrupts SET answered = 1, answer = ?, answered_by = ?, answered_at = ?"
    " WHERE run_id = ? AND node_id = ? AND kind = 'approval' AND answered = 0"
)
"""Give every open approval of (run, node) one answer: (answer JSON, by, at, run, node)."""


def cancel_waiting(store: Store, run_id: str, why: str = "cancelled while waiting") -> None:
    """Cancel waiting run `run_id` (compare-and-set from ``waiting``): its open interrupts
    stay in the record unanswered. `RunNotWaitingError` when it does not wait (a resume took
    it first, or it finished)."""
    with store.write() as db:
        found = db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if found is None:
            raise RunNotFoundError(f"no run {run_id!r} in store {store.path}", path=store.path)
        moved = db.execute(
            "UPDATE runs SET status = 'cancelled', finished = ? WHERE run_id = ?"
            " AND status IN (?, ?)",
            (time.time(), run_id, *WAITING_STATUSES),
        ).rowcount
        if moved != 1:
            raise RunNotWaitingError(
                f"run {run_id!r} is {found[0]}, not waiting: there is no pause to cancel",
                run_id=run_id, status=found[0], path=store.path,
            )  # fmt: skip


def _not_waiting(run_id: str, status: str) -> str:
    if status == "running":
        return (
            f"run {run_id!r} is running: it was resumed already (a double resume) or has not "
            "paused; nothing was changed"
        )
    return f"run {run_id!r} is {status}: it waits for no answer; nothing was changed"


def check_answer(run_id: str, interrupt: Interrupt, value: Any, path: str | None = None) -> None:
    """The answer matches the interrupt's JSON schema, if it has one (else
    `InterruptAnswerError` saying where and how it does not)."""
    if interrupt.schema is None:
        return
    import jsonschema  # a dependency; imported when an answer is checked

    try:
        jsonschema.validate(value, dict(interrupt.schema))
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "the answer"
        problem = f"{where}: {exc.message}"
        raise InterruptAnswerError(
            f"run {run_id!r}: the answer to interrupt {interrupt.id!r} does not match its "
            f"schema ({problem}); answer with a value of the shape the node asked for",
            run_id=run_id, interrupt_id=interrupt.id, problem=problem, path=path,
        ) from None  # fmt: skip
    except jsonschema.SchemaError as exc:  # the node's schema itself is broken: say so
        raise InterruptAnswerError(
            f"run {run_id!r}: interrupt {interrupt.id!r} has an invalid schema ({exc.message})",
            run_id=run_id, interrupt_id=interrupt.id, problem=exc.message, path=path,
        ) from None  # fmt: skip
