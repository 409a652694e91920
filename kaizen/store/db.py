"""`Store`: the one embedded SQLite database behind runs, checkpoints, memory, cache and replay.

Where it lives: an explicit path given to a feature (`LocalRuntime(checkpoint="runs.db")`),
else ``$KAIZEN_HOME/kaizen.db``, else ``.kaizen/kaizen.db`` under the current directory.
`Store.open(path)` returns one shared `Store` per file in a process; ``":memory:"`` is a
private in-process database (the ``"memory"`` provider of agent memory).

How it is safe to share: WAL journal (readers never block the writer), ``synchronous=NORMAL``
(a commit survives the process being killed; only a power loss may drop the last commits), a
connection per thread, and a busy timeout, so writers in several threads and several processes
wait for each other instead of failing. Every write is one transaction (`write()`): it lands
whole or not at all, and a failing write leaves what was stored before untouched.

The schema is versioned (``PRAGMA user_version``); `MIGRATIONS` holds one script per version,
applied in order when an older file is opened, inside one transaction.

SQLite failures become typed errors naming the file and what to do: `StoreCorruptedError` (not
a database, or damaged), `StoreLockedError` (the busy timeout passed), `StoreFullError` (no
space), `StoreError` otherwise.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from kaizen import process
from kaizen.errors import StoreCorruptedError, StoreError, StoreFullError, StoreLockedError

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "MIGRATIONS",
    "Store",
    "StorePath",
    "default_store_path",
    "run_store",
    "store_of_run",
]

StorePath = str | os.PathLike[str]
DEFAULT_BUSY_TIMEOUT = 30.0  # seconds a writer waits for another one before StoreLockedError

# One script per schema version; version N is reached by running MIGRATIONS[N - 1].
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE runs (
        run_id       TEXT PRIMARY KEY,
        workflow     TEXT NOT NULL,
        fingerprint  TEXT NOT NULL,
        nodes        TEXT NOT NULL,  -- JSON: node id -> fingerprint of that node
        parameters   TEXT NOT NULL,  -- encoded run parameters, for resume and replay
        status       TEXT NOT NULL,
        started      REAL NOT NULL,
        finished     REAL,
        checkpoint   INTEGER NOT NULL DEFAULT 0,
        recorded     INTEGER NOT NULL DEFAULT 0,
        record       TEXT  -- the RunRecord as JSON, when the run finished
    );
    CREATE INDEX runs_started ON runs (started);
    CREATE TABLE checkpoints (
        run_id    TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        node_id   TEXT NOT NULL,
        encoding  TEXT NOT NULL,  -- 'json' or 'pickle'
        outputs   BLOB NOT NULL,
        finished  REAL NOT NULL,
        attempts  INTEGER NOT NULL,
        PRIMARY KEY (run_id, node_id)
    );
    CREATE TABLE recordings (
        run_id      TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        node_id     TEXT NOT NULL,
        kind        TEXT NOT NULL,  -- 'model' or 'tool'
        key         TEXT NOT NULL,  -- hash of the canonical request
        occurrence  INTEGER NOT NULL,  -- the n-th time this node made this request
        request     TEXT NOT NULL,  -- the canonical request (no credentials), for diffs
        response    TEXT NOT NULL,
        PRIMARY KEY (run_id, node_id, kind, key, occurrence)
    );
    CREATE TABLE cache (
        key       TEXT PRIMARY KEY,
        kind      TEXT NOT NULL,  -- 'model' or 'tool'
        response  TEXT NOT NULL,
        created   REAL NOT NULL,
        expires   REAL  -- NULL: never
    );
    CREATE TABLE memories (
        id         INTEGER PRIMARY KEY,
        namespace  TEXT NOT NULL,
        session    TEXT NOT NULL,
        text       TEXT NOT NULL,
        created    REAL NOT NULL,
        embedding  BLOB  -- float32 vector (vector_db provider), else NULL
    );
    CREATE INDEX memories_scope ON memories (namespace, session, created);
    CREATE VIRTUAL TABLE memories_fts USING fts5 (
        text, content='memories', content_rowid='id'
    );
    CREATE TRIGGER memories_added AFTER INSERT ON memories BEGIN
        INSERT INTO memories_fts (rowid, text) VALUES (new.id, new.text);
    END;
    CREATE TRIGGER memories_removed AFTER DELETE ON memories BEGIN
        INSERT INTO memories_fts (memories_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END;
    """,
    """
    CREATE TABLE approvals (
        run_id     TEXT NOT NULL,
        node_id    TEXT NOT NULL,
        approver   TEXT NOT NULL,  -- whose approval the policy asked for
        status     TEXT NOT NULL,  -- 'pending', 'approved' or 'denied'
        decided_by TEXT,
        requested  REAL NOT NULL,
        decided    REAL,
        PRIMARY KEY (run_id, node_id)
    );
    """,
    # kaizen serve (kaizen.store.served): the runs it started and every event it streamed
    """
    CREATE TABLE served_runs (
        run_id      TEXT PRIMARY KEY,
        target      TEXT NOT NULL,  -- the served agent or workflow's name
        status      TEXT NOT NULL,  -- queued, running, completed, failed, cancelled
        parameters  TEXT NOT NULL,  -- JSON, as posted
        created     REAL NOT NULL,
        finished    REAL,
        results     TEXT,  -- JSON, when the run ended
        error       TEXT,  -- why it failed or was cancelled
        record      TEXT,  -- the RunRecord as JSON, when the run ended
        cancel      INTEGER NOT NULL DEFAULT 0  -- a cancel asked for through another process
    );
    CREATE INDEX served_runs_created ON served_runs (created);
    CREATE TABLE served_events (
        run_id  TEXT NOT NULL REFERENCES served_runs (run_id) ON DELETE CASCADE,
        seq     INTEGER NOT NULL,  -- the SSE event id, from 1 within a run
        kind    TEXT NOT NULL,
        data    TEXT NOT NULL,  -- JSON
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID;
    """,
    # memory search stems words ("summaries" meets "summary"): the index is rebuilt with the
    # porter tokenizer from the memories table (idempotent, like every statement here)
    """
    DROP TABLE IF EXISTS memories_fts;
    CREATE VIRTUAL TABLE memories_fts USING fts5 (
        text, content='memories', content_rowid='id', tokenize='porter unicode61'
    );
    INSERT INTO memories_fts (memories_fts) VALUES ('rebuild');
    """,
    # pauses for a person (kaizen.store.interrupts): what each waiting node asked, the answers
    # and who gave them, and the state a paused node saved to continue from
    """
    CREATE TABLE interrupts (
        run_id       TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        id           TEXT NOT NULL,  -- "<node_id>/<index>"
        node_id      TEXT NOT NULL,
        idx          INTEGER NOT NULL,
        kind         TEXT NOT NULL,  -- 'input' or 'approval'
        payload      TEXT NOT NULL,  -- encoded JSON (kaizen.store.encode)
        schema       TEXT,  -- JSON schema the answer must match
        tool         TEXT,
        args         TEXT,  -- encoded JSON
        created      REAL NOT NULL,
        answered     INTEGER NOT NULL DEFAULT 0,
        answer       TEXT,  -- encoded JSON
        answered_by  TEXT,
        answered_at  REAL,
        PRIMARY KEY (run_id, id)
    ) WITHOUT ROWID;
    CREATE TABLE paused_nodes (
        run_id   TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        node_id  TEXT NOT NULL,
        state    TEXT NOT NULL,  -- encoded JSON: what the node saved to continue from
        PRIMARY KEY (run_id, node_id)
    ) WITHOUT ROWID;
    """,
    # kaizen serve's leases (kaizen.store.served): the worker that executes a served run, and
    # until when it holds it; a worker that dies stops renewing, and another takes the run over
    """
    ALTER TABLE served_runs ADD COLUMN owner TEXT;
    ALTER TABLE served_runs ADD COLUMN lease_until REAL;
    """,
    # the run browser (kaizen.serve.ui): each workflow's drawable shape, one row per version
    # (fingerprint), so a run can be drawn by a process that has not got the workflow; and the
    # runs list filtered by status or workflow, newest first, as an index walk
    """
    CREATE TABLE IF NOT EXISTS workflows (
        fingerprint  TEXT PRIMARY KEY,
        name         TEXT NOT NULL,
        shape        TEXT NOT NULL  -- JSON: kaizen.workflow.shape.WorkflowShape
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS runs_status ON runs (status, started);
    CREATE INDEX IF NOT EXISTS runs_workflow ON runs (workflow, started);
    CREATE INDEX IF NOT EXISTS served_runs_status ON served_runs (status, created);
    """,
)

_shared: dict[str, Store] = {}
_shared_lock = threading.Lock()
_memory_ids = iter(range(1, 1 << 62))


# The store of the run whose node is running: one run, one store, for every row of it
# (checkpoints, recordings, approvals, cached calls). The runtime sets it for a run that has a
# store of its own (`LocalRuntime(checkpoint=...)` or `record=...`); its nodes see it.
run_store: ContextVar[Store | None] = ContextVar("kaizen_run_store", default=None)


def store_of_run(path: StorePath | Store | None = None) -> Store:
    """The store for a row of the running run: `path` when given, else the run's own store,
    else the default store (outside a run, or for a run without a store)."""
    return Store.open(path if path is not None else run_store.get())


def default_store_path() -> Path:
    """``$KAIZEN_HOME/kaizen.db``, else ``.kaizen/kaizen.db`` in the current directory."""
    home = os.environ.get("KAIZEN_HOME", "").strip()
    return Path(home or ".kaizen") / "kaizen.db"


class Store:
    """One SQLite file shared by every feature (see the module docstring)."""

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

    @classmethod
    def open(cls, path: StorePath | Store | None = None) -> Store:
        """The process's `Store` for `path` (None: the default path); a `Store` is returned
        as it is. One object per file, so its connections and caches are shared."""
        if isinstance(path, Store):
            return path
        if path is not None and str(path) == ":memory:":
            return cls(path)
        key = str(
            (Path(path) if path is not None else default_store_path()).expanduser().absolute()
        )
        with _shared_lock:
            store = _shared.get(key)
            if store is None:
                store = _shared[key] = cls(key)
            return store

    def __repr__(self) -> str:
        return f"Store({self.path!r})"

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
                for statement in _statements(MIGRATIONS[number]):
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version={number + 1}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    # -- reading and writing -----------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: everything inside lands together, or nothing does."""
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

    def read(self, sql: str, parameters: tuple[Any, ...] | dict[str, Any] = ()) -> list[Any]:
        """The rows of one query."""
        try:
            return self.connection().execute(sql, parameters).fetchall()
        except sqlite3.Error as exc:
            raise self.translate(exc, "read") from exc

    def translate(self, exc: sqlite3.Error, doing: str) -> StoreError:
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


process.register("store.db", _shared.clear)
