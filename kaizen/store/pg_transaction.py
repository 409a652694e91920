"""A write transaction on a Postgres store, in as few round trips as it can take.

`Transaction` is the connection a `PostgresStore.write()` block gets: SQL written with ``?``
placeholders (`to_pyformat`), each statement's result fetched at once (`Rows`), and every
statement kept, so that a lost connection can be replaced and the transaction replayed once,
going on only if every statement gives what it gave before. Every write transaction takes the
writers' advisory lock (`WRITE_LOCK`) first: writes are serialised as SQLite serialises them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from kaizen.errors import StoreUnavailableError

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

__all__ = ["WRITE_LOCK", "Connections", "Rows", "Transaction", "lost", "pg_sql", "to_pyformat"]

WRITE_LOCK = 0x6B61697A656E01  # held by each write transaction

_PLACEHOLDER = re.compile(r"'(?:[^']|'')*'|\?|%")


def to_pyformat(sql: str) -> str:
    """SQL written with ``?`` placeholders as psycopg wants it (``%s``; a literal ``%`` doubled);
    string literals are left as they are."""
    return _PLACEHOLDER.sub(
        lambda m: "%s" if m.group() == "?" else "%%" if m.group() == "%" else m.group(), sql
    )


_sql_cache: dict[str, str] = {}


def pg_sql(sql: str) -> str:
    """`to_pyformat(sql)`, kept per statement text."""
    converted = _sql_cache.get(sql)
    if converted is None:
        if len(_sql_cache) > 4096:
            _sql_cache.clear()
        converted = _sql_cache[sql] = to_pyformat(sql)
    return converted


class Rows:
    """What a statement gave (fetched at once): a cursor's reading methods."""

    __slots__ = ("_at", "rowcount", "rows")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount
        self._at = 0

    def fetchone(self) -> Any:
        if self._at >= len(self.rows):
            return None
        self._at += 1
        return self.rows[self._at - 1]

    def fetchall(self) -> list[Any]:
        rest, self._at = self.rows[self._at :], len(self.rows)
        return rest

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


@dataclass
class _Statement:
    sql: str
    parameters: Any
    many: bool
    rows: list[Any] = field(default_factory=list)
    rowcount: int = -1


class Connections(Protocol):
    """What a transaction needs of its store (`PostgresStore`): the driver, the pool to take a
    new connection from, how long to wait for one, and the store's name for messages."""

    driver: Any
    timeout: float
    path: str

    @property
    def pool(self) -> psycopg_pool.ConnectionPool[Any]: ...

    def discard_lost(self) -> None: ...


class Transaction:
    """The connection a `write()` block gets: ``?`` SQL, results fetched at once, and every
    statement kept so that a lost connection can be replaced and the transaction replayed
    once (see the module docstring).

    Round trips are what a write costs on a server: the transaction's ``BEGIN`` and lock go
    out with its first statement, and `executemany` is sent with the next `execute` or the
    commit (its cursor's `rowcount` is -1: nothing waits for it), all as one query text; the
    ``COMMIT`` goes alone, so a connection lost before it loses nothing that cannot be
    replayed; for a write the caller declares idempotent, the ``COMMIT`` goes with the rest (a
    checkpoint is one round trip)."""

    def __init__(self, store: Connections, connection: psycopg.Connection[Any]) -> None:
        self.store = store
        self.driver = store.driver
        self.connection = connection
        self.statements: list[_Statement] = []  # sent and answered, in order
        self.deferred: list[_Statement] = []  # executemany's not sent yet
        self.begun = False
        self.replayed = False

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Rows:
        statement = _Statement(sql, tuple(parameters), many=False)
        self._send([*self.deferred, statement])
        return Rows(list(statement.rows), statement.rowcount)

    def executemany(self, sql: str, parameters: Sequence[Sequence[Any]]) -> Rows:
        self.deferred.append(_Statement(sql, [tuple(p) for p in parameters], many=True))
        return Rows([], -1)

    def flush(self) -> None:
        """Send what is deferred (before the commit)."""
        if self.deferred or not self.begun:
            self._send(list(self.deferred))

    def flush_and_commit(self) -> None:
        """Send what is deferred with the COMMIT (an idempotent write: sent again whole on a
        new connection if this one is lost, whether or not it had landed)."""
        self._send(list(self.deferred), commit=True)

    def _send(self, batch: list[_Statement], commit: bool = False) -> None:
        try:
            self._round_trip(batch, commit)
        except self.store.driver.OperationalError as exc:
            if not lost(self.connection) or self.replayed:
                raise
            self._replace(exc)
            self._round_trip(batch, commit)
        self.deferred.clear()
        self.statements += batch

    def _round_trip(self, batch: list[_Statement], commit: bool = False) -> None:
        """Send `batch` (after BEGIN and the writers' lock, when not begun) as one query text,
        its parameters bound by the driver's client-side binding (escaped literals), and read
        each statement's result: one round trip."""
        cursor = self.driver.ClientCursor(self.connection)
        parts: list[str] = []
        if not self.begun:
            parts += ["BEGIN", f"SELECT pg_advisory_xact_lock({WRITE_LOCK})"]
        for statement in batch:
            sql = pg_sql(statement.sql)
            rows = statement.parameters if statement.many else [statement.parameters]
            parts += [cursor.mogrify(sql, row or None) for row in rows]
        if commit:
            parts.append("COMMIT")
        try:
            cursor.execute(";\n".join(parts).encode(), prepare=False)
            if not self.begun:
                cursor.nextset()  # BEGIN
                cursor.nextset()  # the lock
            self.begun = True
            for statement in batch:
                count = len(statement.parameters) if statement.many else 1
                statement.rowcount = 0 if statement.many else -1
                for _ in range(count):
                    if statement.many:
                        statement.rowcount += max(cursor.rowcount, 0)
                    else:
                        statement.rowcount = cursor.rowcount
                        statement.rows = (
                            [tuple(row) for row in cursor.fetchall()] if cursor.description else []
                        )
                    cursor.nextset()
        finally:
            cursor.close()

    def _replace(self, lost: Exception) -> None:
        """A new connection, the transaction so far replayed on it (once)."""
        self.replayed = True
        self.store.pool.putconn(self.connection)  # the pool discards a broken connection
        self.store.discard_lost()
        self.connection = self.store.pool.getconn(timeout=self.store.timeout)
        self.begun = False
        sent, self.statements = self.statements, []
        again = [_Statement(s.sql, s.parameters, s.many) for s in sent]
        self._round_trip(again)
        for before, after in zip(sent, again, strict=True):
            if (after.rows, after.rowcount) != (before.rows, before.rowcount):
                raise StoreUnavailableError(
                    f"store {self.store.path}: the connection was lost mid-transaction and the "
                    "store changed meanwhile, so the transaction was not replayed; nothing of "
                    "it landed, try again",
                    path=self.store.path,
                ) from lost
        self.statements = again


def lost(connection: psycopg.Connection[Any]) -> bool:
    return bool(connection.closed or getattr(connection, "broken", False))
