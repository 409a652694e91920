"""`PostgresStore`: the store on a PostgreSQL server, so several servers and a Ray cluster share
one truth (extra ``postgres``: psycopg 3 and psycopg_pool, imported only when a
``postgresql://`` store is opened). See `kaizen.store.db` for the interface every feature uses;
this module holds all the SQL and behaviour that differ from SQLite.

Opening: `Store.open("postgresql://user:password@host:5432/db")` (or ``$KAIZEN_STORE_URL``, or
``--store URL``). The first connection is made at once, so a wrong URL, a refused connection, a
wrong password or a missing database is a `StoreUnavailableError` naming the store (its URL
without the password) before anything runs. The schema is then brought up to date
(`kaizen.store.schema`, the `Migration.postgres` scripts) in one transaction under an advisory
lock: processes opening a new database at once migrate it exactly once. A role without the
right to create tables gets a `StorePermissionError` saying what to grant.

Connections: a `psycopg_pool.ConnectionPool` per store and process, sized by
``KAIZEN_STORE_POOL_MIN`` (default 1) and ``KAIZEN_STORE_POOL_MAX`` (default 10), or
`PostgresStore(url, pool_min=, pool_max=)`; a caller waits at most `timeout` seconds
(``KAIZEN_STORE_TIMEOUT``, default 30) for a free connection or a new one, then gets a
`StoreUnavailableError`.

Writes keep SQLite's meaning: each `write()` is one transaction that first takes a transaction
advisory lock (`WRITE_LOCK`), so writers run one at a time, as under SQLite's ``BEGIN
IMMEDIATE``, and a read followed by a write inside a transaction sees no other writer in
between; readers never wait. A writer that waits longer than `busy_timeout` for that lock gets
`StoreLockedError`. A connection lost in the middle of a transaction (a server restart, a
network cut) is retried once: a new connection replays the transaction's statements, and goes
on only if each gives what the first gave; otherwise nothing of it landed and the error is a
`StoreUnavailableError`. A connection lost during the commit itself leaves the outcome unknown:
that is said, never guessed, except for a write its caller declared idempotent
(`write(idempotent=True)`: checkpoints, the batch writer's inserts ``ON CONFLICT`` and updates
to given values), which goes out with its COMMIT in one round trip and is simply sent again.

Followers of served runs (`follow`): one connection per store and process LISTENs on
``kaizen_served`` (a run's new events or status, from triggers on its tables) and
``kaizen_cancel`` (a cancel asked), so a server streaming another server's run hears each new
event at once instead of polling.

Credentials: the store's `path` is its URL with the password masked; the password is scrubbed
from every error message that could carry it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from kaizen import process
from kaizen.errors import (
    ConfigError,
    StoreError,
    StoreFullError,
    StoreLockedError,
    StorePermissionError,
    StoreUnavailableError,
)
from kaizen.store.db import DEFAULT_BUSY_TIMEOUT, Store, password_of, redact_url
from kaizen.store.listen import Listener
from kaizen.store.pg_transaction import WRITE_LOCK, Transaction, lost, pg_sql, to_pyformat
from kaizen.store.schema import MIGRATIONS

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

    from kaizen.store.db import Follower, StorePath

__all__ = ["MIGRATE_LOCK", "WRITE_LOCK", "PostgresStore", "redact_url", "to_pyformat"]

# advisory lock keys (any 64-bit numbers no other application is likely to pick)
MIGRATE_LOCK = 0x6B61697A656E02  # held while the schema is brought up to date


def _env_number(name: str, default: float, kind: type[int] | type[float]) -> Any:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number of seconds"
        raise ConfigError(f"{name} must be {what}, got {text!r}") from None


def _import_driver() -> tuple[Any, Any]:
    try:
        import psycopg
        import psycopg_pool
    except ImportError:
        raise ConfigError(
            "a postgresql:// store needs the postgres extra: pip install 'kaizen[postgres]' "
            "(psycopg 3 and psycopg_pool)"
        ) from None
    return psycopg, psycopg_pool


class PostgresStore(Store):
    """The store on a PostgreSQL server (see the module docstring)."""

    dialect = "postgres"
    insertion_order = "seq"

    def __init__(
        self,
        path: StorePath | None = None,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        pool_min: int | None = None,
        pool_max: int | None = None,
        timeout: float | None = None,
    ) -> None:
        """`pool_min`/`pool_max`: connections kept open / at most (default
        ``$KAIZEN_STORE_POOL_MIN`` or 1, ``$KAIZEN_STORE_POOL_MAX`` or 10); `timeout`: seconds
        to wait for a connection (default ``$KAIZEN_STORE_TIMEOUT`` or 30); `busy_timeout`:
        seconds a writer waits for another one."""
        driver, pools = _import_driver()
        self.driver = driver
        self.url = str(path if path is not None else os.environ.get("KAIZEN_STORE_URL", ""))
        self.path = redact_url(self.url)
        self._password = password_of(self.url)
        self.busy_timeout = busy_timeout
        self.timeout = (
            timeout if timeout is not None else _env_number("KAIZEN_STORE_TIMEOUT", 30.0, float)
        )
        self.pool_min = (
            pool_min if pool_min is not None else _env_number("KAIZEN_STORE_POOL_MIN", 1, int)
        )
        self.pool_max = (
            pool_max if pool_max is not None else _env_number("KAIZEN_STORE_POOL_MAX", 10, int)
        )
        if not 0 <= self.pool_min <= self.pool_max or self.pool_max < 1:
            raise ConfigError(
                f"store {self.path}: the pool needs 0 <= pool_min <= pool_max and pool_max >= 1 "
                f"(got {self.pool_min} and {self.pool_max}; KAIZEN_STORE_POOL_MIN / _MAX)"
            )
        self._pool_class = pools.ConnectionPool
        self._pool: psycopg_pool.ConnectionPool[Any] | None = None
        self._pool_lock = threading.Lock()
        self._generation = process.generation
        self._listener: Listener | None = None
        connection = self._connect()  # errors surface here: the URL, the server, the login
        try:
            self._migrate(connection)
        finally:
            connection.close()

    # -- connections -----------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return self.driver.connect(
                self.url,
                autocommit=True,
                connect_timeout=max(1, int(self.timeout)),
                application_name="kaizen",
            )
        except self.driver.Error as exc:
            raise self.translate(exc, "connect") from None
        except Exception as exc:  # a URL libpq cannot parse
            raise self.translate(exc, "connect") from None

    def _configure(self, connection: psycopg.Connection[Any]) -> None:
        connection.execute(f"SET lock_timeout = {int(self.busy_timeout * 1000)}")

    @property
    def pool(self) -> psycopg_pool.ConnectionPool[Any]:
        """This process's connection pool (a forked child opens its own)."""
        with self._pool_lock:
            if self._generation != process.generation:
                self._pool, self._listener = None, None  # the parent's sockets are not ours
                self._generation = process.generation
            if self._pool is None:
                self._pool = self._pool_class(
                    self.url,
                    min_size=self.pool_min,
                    max_size=self.pool_max,
                    timeout=self.timeout,
                    kwargs={"autocommit": True, "application_name": "kaizen"},
                    configure=self._configure,
                    name=f"kaizen {self.path}",
                    open=True,
                )
            return self._pool

    @contextmanager
    def _connection(self, doing: str) -> Iterator[psycopg.Connection[Any]]:
        try:
            connection = self.pool.getconn(timeout=self.timeout)
        except Exception as exc:
            raise self.translate(exc, doing) from None
        try:
            yield connection
        finally:
            self.pool.putconn(connection)

    def discard_lost(self) -> None:
        """Drop the pool's idle connections that are lost too (a server restart loses them
        all), so the retry gets a live one."""
        with contextlib.suppress(Exception):
            self.pool.check()

    def _migrate(self, connection: psycopg.Connection[Any]) -> None:
        try:
            if self._version(connection) == len(MIGRATIONS):
                return
            with connection.transaction():
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
                connection.execute("CREATE TABLE IF NOT EXISTS kaizen_schema (version INTEGER)")
                version = self._version(connection) or 0  # another process may have migrated
                if version > len(MIGRATIONS):
                    raise StoreError(
                        f"store {self.path} has schema version {version}, newer than this "
                        f"Kaizen knows ({len(MIGRATIONS)}): upgrade Kaizen, or use another "
                        "database",
                        path=self.path,
                    )
                for number in range(version, len(MIGRATIONS)):
                    connection.execute(MIGRATIONS[number].postgres.encode())
                connection.execute("DELETE FROM kaizen_schema")
                connection.execute(
                    "INSERT INTO kaizen_schema VALUES (%s)", (max(version, len(MIGRATIONS)),)
                )
        except self.driver.Error as exc:
            raise self.translate(exc, "migrate") from None

    def _version(self, connection: psycopg.Connection[Any]) -> int | None:
        exists = connection.execute("SELECT to_regclass('kaizen_schema')").fetchone()
        if exists is None or exists[0] is None:
            return None
        row = connection.execute("SELECT max(version) FROM kaizen_schema").fetchone()
        return int(row[0]) if row and row[0] is not None else None

    # -- reading and writing -----------------------------------------------------------------------

    @contextmanager
    def write(self, *, idempotent: bool = False) -> Iterator[Transaction]:
        """One write transaction (see the module docstring); `idempotent` (see
        `Store.write`): the COMMIT goes with the last statements, one round trip fewer."""
        try:
            connection = self.pool.getconn(timeout=self.timeout)
        except Exception as exc:
            raise self.translate(exc, "write") from None
        transaction = Transaction(self, connection)
        try:
            try:
                yield transaction
                if idempotent:
                    transaction.flush_and_commit()
                else:
                    transaction.flush()
            except BaseException as exc:
                _rollback(transaction.connection)
                if isinstance(exc, self.driver.Error):
                    raise self.translate(exc, "write") from None
                raise
            if not idempotent:
                self._commit(transaction.connection)
        finally:
            self.pool.putconn(transaction.connection)  # (a new one, when the first was lost)

    def _commit(self, connection: psycopg.Connection[Any]) -> None:
        try:
            connection.execute("COMMIT")
        except self.driver.OperationalError as exc:
            if lost(connection):
                raise StoreUnavailableError(
                    f"store {self.path}: the connection was lost while committing, so this "
                    "write may or may not have landed; check, then try again "
                    f"({self._scrub(str(exc))})",
                    path=self.path,
                ) from None
            raise self.translate(exc, "write") from None
        except self.driver.Error as exc:
            _rollback(connection)
            raise self.translate(exc, "write") from None

    def read(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        """The rows of one query; a lost connection is retried once on another."""
        for attempt in (1, 2):
            with self._connection("read") as connection:
                try:
                    cursor = connection.execute(pg_sql(sql), tuple(parameters) or None)
                    return [tuple(row) for row in cursor.fetchall()] if cursor.description else []
                except self.driver.OperationalError as exc:
                    if attempt == 1 and lost(connection):
                        self.discard_lost()
                        continue
                    raise self.translate(exc, "read") from None
                except self.driver.Error as exc:
                    raise self.translate(exc, "read") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _scrub(self, text: str) -> str:
        if self._password:
            text = text.replace(self._password, "***")
        return text.replace(self.url, self.path)

    def translate(self, exc: Exception, doing: str) -> StoreError:
        """A psycopg error as the typed error a user can act on (no password in it)."""
        errors, driver = self.driver.errors, self.driver
        text = self._scrub(str(exc).strip()) or type(exc).__name__

        def error(kind: type[StoreError], why: str, advice: str) -> StoreError:
            return kind(f"store {self.path}: could not {doing}{why} ({text}); {advice}",
                        path=self.path)  # fmt: skip

        if isinstance(exc, errors.InsufficientPrivilege):
            return error(StorePermissionError, ", the role lacks a permission", "grant it what "
                         "the schema needs (CREATE on the schema, and SELECT, INSERT, UPDATE, "
                         "DELETE on Kaizen's tables), or let the database owner open the store "
                         "once")  # fmt: skip
        if isinstance(exc, errors.LockNotAvailable) or "lock timeout" in text:
            return error(StoreLockedError, f", another writer held the store for "
                         f"{self.busy_timeout:g} s", "wait for it, or give this feature its "
                         "own store")  # fmt: skip
        if isinstance(exc, errors.DiskFull):
            return error(StoreFullError, ", the server has no space left", "free some space "
                         "or prune old runs (`kaizen runs prune --older-than 7d`); what was "
                         "stored before is intact")  # fmt: skip
        if type(exc).__name__ == "PoolTimeout":
            return error(StoreUnavailableError, f", no connection became free within "
                         f"{self.timeout:g} s", "raise KAIZEN_STORE_POOL_MAX or "
                         "KAIZEN_STORE_TIMEOUT, or check that the server is up")  # fmt: skip
        lost = isinstance(exc, driver.OperationalError | driver.InterfaceError)
        if doing == "connect" or lost or not isinstance(exc, driver.Error):
            return error(StoreUnavailableError, "", "check the URL (user, password, host, "
                         "port, database), that the server is running and reachable, and "
                         "that the database exists")  # fmt: skip
        return StoreError(f"store {self.path}: could not {doing}: {text}", path=self.path)

    def release(self) -> None:
        self.close()

    def close(self) -> None:
        """Close this store's pool and listener (a later use opens new ones). In a forked
        child the parent's are only dropped: their sockets are the parent's."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
            listener, self._listener = self._listener, None
            if self._generation != process.generation:
                return
        if pool is not None:
            with contextlib.suppress(Exception):
                pool.close()
        if listener is not None:
            listener.stop()

    # -- what Postgres spells its own way ----------------------------------------------------------

    def json_number(self, column: str, *keys: str) -> str:
        path = ",".join(keys)
        return f"CAST({column}::jsonb #>> '{{{path}}}' AS DOUBLE PRECISION)"

    def memory_stems(self, words: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """The English stems Postgres indexes each word by (none for a stopword)."""
        rows = self.read(
            "SELECT w, tsvector_to_array(to_tsvector('english', w)) FROM unnest(?::text[]) AS w",
            (list(words),),
        )
        return {word: tuple(stems) for word, stems in rows if stems}

    def memory_frequencies(self, stems: Sequence[str]) -> dict[str, int]:
        if not stems:
            return {}
        rows = self.read(
            "SELECT s, (SELECT count(*) FROM memories WHERE words @@ quote_literal(s)::tsquery)"
            " FROM unnest(?::text[]) AS s",
            (list(stems),),
        )
        return {stem: int(count) for stem, count in rows}

    def memory_matches(
        self, words: Sequence[str], namespace: str, session: str, since: float | None, limit: int
    ) -> list[tuple[int, float]]:
        """Scores (higher is better) of the scope's memories holding any of the words (each
        stemmed as the index is): for each word a memory holds, BM25's inverse document
        frequency over every memory, ln(1 + (N - n + 0.5) / (n + 0.5)), summed, times
        ``ts_rank`` (how often and how densely it holds them), so a rare word counts for more
        than a common one, as on SQLite."""
        fresh = " AND m.created >= ?" if since is not None else ""
        rows = self.read(
            "WITH q AS (SELECT to_tsquery('english', quote_literal(w)) AS tq"
            " FROM unnest(?::text[]) AS w),"
            " total AS (SELECT count(*)::float8 AS n FROM memories),"
            " weighted AS (SELECT q.tq, ln(1 + (total.n - d.n + 0.5) / (d.n + 0.5)) AS idf"
            " FROM q, total, LATERAL (SELECT count(*)::float8 AS n FROM memories"
            " WHERE words @@ q.tq) AS d)"
            " SELECT m.id, sum(weighted.idf * ts_rank(m.words, weighted.tq)) AS score"
            " FROM memories m JOIN weighted ON m.words @@ weighted.tq"
            " WHERE m.namespace = ? AND m.session = ?"
            + fresh
            + " GROUP BY m.id ORDER BY score DESC, m.id DESC LIMIT ?",
            (list(words), namespace, session, *([since] if since is not None else []), limit),
        )
        return [(int(i), float(score)) for i, score in rows]

    def _listen_connection(self) -> psycopg.Connection[Any]:
        return self.driver.connect(self.url, autocommit=True, application_name="kaizen listener")

    def follow(self, channel: str, key: str | None = None) -> Follower:
        with self._pool_lock:
            if self._generation != process.generation:
                self._pool, self._listener = None, None
                self._generation = process.generation
            if self._listener is None or not self._listener.alive():
                self._listener = Listener(self._listen_connection, self.path)
            listener = self._listener
        return listener.follower(channel, key)


def _rollback(connection: psycopg.Connection[Any]) -> None:
    if not lost(connection):
        with contextlib.suppress(Exception):
            connection.execute("ROLLBACK")
