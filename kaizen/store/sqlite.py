"""`SqliteStore`: the store in one embedded SQLite file (the default backend; see
`kaizen.store.db` for the interface every feature uses).

Where it lives: an explicit path given to a feature (`LocalRuntime(checkpoint="runs.db")`),
else ``$KAIZEN_HOME/kaizen.db``, else ``.kaizen/kaizen.db`` under the current directory;
``":memory:"`` is a private in-process database (the ``"memory"`` provider of agent memory).

How it is safe to share: WAL journal (readers never block the writer), ``synchronous=NORMAL``
(a commit survives the process being killed; only a power loss may drop the last commits), a
connection per thread, and a busy timeout, so writers in several threads and several processes
wait for each other instead of failing. Every write is one transaction (`write()`, ``BEGIN
IMMEDIATE``: one writer at a time): it lands whole or not at all, and a failing write leaves
what was stored before untouched.

The schema is versioned (``PRAGMA user_version``); the `Migration.sqlite` scripts of
`kaizen.store.schema.MIGRATIONS` are applied in order when an older file is opened, inside one
transaction.

What is SQLite's own here: the memory text index (FTS5 with the porter tokenizer, BM25 ranks;
its vocabulary read through per-connection ``fts5vocab`` tables), ``json_extract``, and the
translation of SQLite's errors: `StoreCorruptedError` (not a database, or damaged),
`StoreLockedError` (the busy timeout passed), `StoreFullError` (no space), `StoreError`
otherwise.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kaizen import process
from kaizen.errors import StoreCorruptedError, StoreError, StoreFullError, StoreLockedError
from kaizen.store.db import DEFAULT_BUSY_TIMEOUT, Store, StorePath, default_store_path
from kaizen.store.schema import MIGRATIONS

__all__ = ["SqliteStore"]

_memory_ids = iter(range(1, 1 << 62))
_POOL = 200  # best FTS matches ranked per try, before keeping the asked scope's


class SqliteStore(Store):
    """One SQLite file shared by every feature (see the module docstring)."""

    dialect = "sqlite"

    def __init__(
        self,
        path: StorePath | None = None,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        max_size: int | None = None,
    ):
        """`max_size`: bytes the file may grow to (SQLite's ``max_page_count``, on every
        connection); a write that would pass it fails with `StoreFullError`, as on a full
        disk, and what was stored before stays."""
        self.in_memory = path is not None and str(path) == ":memory:"
        if self.in_memory:
            # a named shared-cache database: every thread's connection sees the same data
            self.path = f"memory-{next(_memory_ids)}"
            self._uri = f"file:kaizen-{self.path}?mode=memory&cache=shared"
        else:
            resolved = Path(path) if path is not None else default_store_path()
            self.path = str(resolved.expanduser().absolute())
            self._uri = Path(self.path).as_uri()
        self.busy_timeout = busy_timeout
        self.max_size = max_size
        self._local = threading.local()
        self._generation = process.generation  # the fork its connections belong to
        self._keepalive: sqlite3.Connection | None = None
        self._wal = _WalCheckpoints(self._uri, f"{self.path}-wal", busy_timeout)
        if not self.in_memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        first = self.connection()  # opens, checks and migrates now: errors surface here
        if self.in_memory:
            self._keepalive = first  # an in-memory database lives while a connection does

    # -- connections -----------------------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened, configured and migrated on first use)."""
        if self._generation != process.generation:
            # a forked child: the parent's connections are not this process's to use
            self._local = threading.local()
            self._generation = process.generation
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._connect()
        return connection

    def _connect(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(
                self._uri,
                uri=True,
                timeout=self.busy_timeout,
                isolation_level=None,  # transactions are explicit: BEGIN IMMEDIATE in write()
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise self.translate(exc, "open") from exc
        try:
            if not self.in_memory:
                connection.execute("PRAGMA journal_mode=WAL")
                # the WAL is copied into the file by a thread of its own (`_WalCheckpoints`),
                # not by whichever commit crosses the threshold: a checkpoint syncs the disk,
                # and commits on the driver's path (sync checkpoints) must stay cheap
                connection.execute("PRAGMA wal_autocheckpoint=0")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA foreign_keys=ON")
            connection.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            self._migrate(connection)
            # per connection, not in the schema: the document frequency of each word in the
            # memory index, which memory search reads to skip words nearly every memory holds
            connection.execute(
                "CREATE VIRTUAL TABLE IF NOT EXISTS temp.memories_vocab"
                " USING fts5vocab(main, memories_fts, 'row')"
            )
            # ... and the words of a query as that index spells them (its tokenizer's stems)
            connection.execute(
                "CREATE VIRTUAL TABLE IF NOT EXISTS temp.memory_query"
                " USING fts5(text, tokenize='porter unicode61')"
            )
            connection.execute(
                "CREATE VIRTUAL TABLE IF NOT EXISTS temp.memory_query_terms"
                " USING fts5vocab(temp, memory_query, 'instance')"
            )
            if self.max_size is not None:
                page_size = connection.execute("PRAGMA page_size").fetchone()[0]
                connection.execute(f"PRAGMA max_page_count={max(1, self.max_size // page_size)}")
        except sqlite3.Error as exc:
            connection.close()
            raise self.translate(exc, "open") from exc
        return connection

    def _migrate(self, connection: sqlite3.Connection) -> None:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(
                f"store {self.path} has schema version {version}, newer than this Kaizen knows "
                f"({len(MIGRATIONS)}): upgrade Kaizen, or use another store path",
                path=self.path,
            )
        if version == len(MIGRATIONS):
            return
        connection.execute("BEGIN IMMEDIATE")
        try:
            # another process may have migrated while we waited for the lock
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            for number in range(version, len(MIGRATIONS)):
                for statement in _statements(MIGRATIONS[number].sqlite):
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version={number + 1}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    # -- reading and writing -----------------------------------------------------------------------

    @contextmanager
    def write(self, *, idempotent: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction: everything inside lands together, or nothing does
        (`idempotent` changes nothing here: a local commit is no round trip)."""
        connection = self.connection()
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self.translate(exc, "write") from exc
        try:
            yield connection
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(connection)
            raise self.translate(exc, "write") from exc
        except BaseException:
            _rollback(connection)
            raise
        if not self.in_memory:
            self._wal.committed()

    def read(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        """The rows of one query."""
        try:
            return self.connection().execute(sql, parameters).fetchall()
        except sqlite3.Error as exc:
            raise self.translate(exc, "read") from exc

    def translate(self, exc: Exception, doing: str) -> StoreError:
        """A SQLite error as the typed error a user can act on."""
        code = getattr(exc, "sqlite_errorcode", None)
        text = str(exc)
        where = f"store {self.path}"
        if code in (sqlite3.SQLITE_FULL,) or "disk is full" in text:
            return StoreFullError(
                f"{where}: could not {doing}, no space left ({text}); free some space or "
                "prune old runs (`kaizen runs prune --older-than 7d`); what was stored before "
                "is intact",
                path=self.path,
            )
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in text:
            return StoreLockedError(
                f"{where}: could not {doing}, the database stayed locked by another process or "
                f"thread for {self.busy_timeout:g} s ({text}); wait for it, or give this "
                "feature its own store path",
                path=self.path,
            )
        if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT) or "not a database" in text:
            return StoreCorruptedError(
                f"{where} is not a readable Kaizen store ({text}); move it aside (it is left "
                "untouched) and Kaizen starts a new one, or point KAIZEN_HOME elsewhere",
                path=self.path,
            )
        return StoreError(f"{where}: could not {doing}: {text}", path=self.path)

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    # -- what SQLite spells its own way ------------------------------------------------------------

    def json_number(self, column: str, *keys: str) -> str:
        return f"json_extract({column}, '$.{'.'.join(keys)}')"

    def memory_stems(self, words: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """The porter tokenizer's tokens of each word, read back through a per-connection FTS5
        table and its ``fts5vocab`` view."""
        connection = self.connection()
        try:
            # the words go into a per-connection table only for as long as this transaction,
            # which touches no shared table and is rolled back
            connection.execute("BEGIN")
            try:
                connection.executemany(
                    "INSERT INTO temp.memory_query (rowid, text) VALUES (?, ?)",
                    list(enumerate(words, 1)),
                )
                rows = connection.execute(
                    "SELECT doc, term FROM temp.memory_query_terms ORDER BY doc, offset"
                ).fetchall()
            finally:
                connection.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise self.translate(exc, "read") from exc
        stems: dict[str, tuple[str, ...]] = {}
        for doc, term in rows:
            word = words[doc - 1]
            stems[word] = (*stems.get(word, ()), term)
        return stems

    def memory_frequencies(self, stems: Sequence[str]) -> dict[str, int]:
        if not stems:
            return {}
        marks = ",".join("?" * len(stems))
        rows = self.read(
            f"SELECT term, doc FROM temp.memories_vocab WHERE term IN ({marks})", tuple(stems)
        )
        return {term: int(count) for term, count in rows}

    def memory_matches(
        self, words: Sequence[str], namespace: str, session: str, since: float | None, limit: int
    ) -> list[tuple[int, float]]:
        """BM25 ranks (lower is better). FTS5 ranks its best `pool` matches across every scope
        (ORDER BY rank LIMIT is its fast path); when other scopes crowd this one's out of
        them, the pool grows until it holds enough or all."""
        match = " OR ".join(f'"{word}"' for word in words)
        fresh = " AND m.created >= ?" if since is not None else ""
        scope = (namespace, session) if since is None else (namespace, session, since)
        pool = _POOL
        while True:
            rows = self.read(
                "SELECT f.rowid, f.rank, m.id IS NOT NULL FROM (SELECT rowid, rank"
                " FROM memories_fts WHERE memories_fts MATCH ? ORDER BY rank LIMIT ?) AS f"
                " LEFT JOIN memories m ON m.id = f.rowid AND m.namespace = ? AND m.session = ?"
                + fresh
                + " ORDER BY f.rank",
                (match, pool, *scope),
            )
            ranked = [(int(i), float(rank)) for i, rank, in_scope in rows if in_scope][:limit]
            if len(ranked) == limit or len(rows) < pool:
                return ranked
            pool *= 8


class _WalCheckpoints:
    """Copies a store's write-ahead log into its file every `EVERY` commits, on a daemon thread
    of its own with a connection of its own (SQLite's PASSIVE checkpoint: it never waits for a
    reader or writer). The store's connections turn SQLite's automatic checkpoint off, which
    would run it inside whichever commit crossed the threshold. A log that writers never let a
    passive checkpoint reset (commits without a pause) is bounded: past `LIMIT` bytes the
    thread truncates it (a TRUNCATE checkpoint, which makes writers wait while it runs)."""

    EVERY = 256
    LIMIT = 64 << 20  # bytes of write-ahead log before a truncating checkpoint

    def __init__(self, uri: str, wal_path: str, busy_timeout: float) -> None:
        self.uri = uri
        self.wal_path = wal_path
        self.busy_timeout = busy_timeout
        self.commits = 0
        self.wanted = threading.Event()
        self.thread: threading.Thread | None = None
        self.pid = os.getpid()

    def committed(self) -> None:
        self.commits += 1  # racy across threads, by design: it only paces the checkpoints
        if self.commits < self.EVERY:
            return
        self.commits = 0
        thread = self.thread
        if thread is None or not thread.is_alive() or self.pid != os.getpid():
            self.pid = os.getpid()
            self.wanted = threading.Event()
            thread = self.thread = threading.Thread(
                target=self._run, args=(self.wanted,), name="kaizen-wal-checkpoint", daemon=True
            )
            thread.start()
        self.wanted.set()

    def _run(self, wanted: threading.Event) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while wanted.wait(IDLE_WAL_SECONDS):
                wanted.clear()
                if connection is None:
                    connection = sqlite3.connect(
                        self.uri, uri=True, timeout=self.busy_timeout, isolation_level=None
                    )
                with contextlib.suppress(sqlite3.Error, OSError):  # busy, or gone: next time
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    if os.path.getsize(self.wal_path) > self.LIMIT:
                        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # the file could not be opened: the next commits try again
        finally:
            if self.thread is threading.current_thread():
                self.thread = None
            if connection is not None:
                connection.close()


IDLE_WAL_SECONDS = 30.0  # the checkpoint thread ends after this long without a request


def _rollback(connection: sqlite3.Connection) -> None:
    # SQLite may have rolled back already (it does on some errors, e.g. SQLITE_FULL)
    if connection.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")


def _statements(script: str) -> Iterator[str]:
    """The statements of a migration script, triggers kept whole."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        if line.strip().startswith("--") and not buffer.strip():
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer.strip()
            buffer = ""
    if buffer.strip():
        yield buffer.strip()
