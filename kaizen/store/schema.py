"""The schema of the store, one versioned list for both backends (`MIGRATIONS`).

Version N is reached by running ``MIGRATIONS[N - 1]``: its `Migration.sqlite` script on a SQLite
store, its `Migration.postgres` script on a Postgres one. Each version says the same thing in
both dialects (the same tables, columns and meaning; the types each database spells its own
way: ``REAL``/``DOUBLE PRECISION``, ``BLOB``/``BYTEA``; the memory text index is FTS5 on SQLite
and a ``tsvector`` column on Postgres; Postgres also notifies followers of served runs). The
SQLite scripts document the columns.

Rules for a new version: add one `Migration` at the end with both scripts; never edit a shipped
one. Never rewrite a large table in place: add nullable columns, new tables, and indexes (on
Postgres an index on a big table belongs in a version of its own, it holds a lock on the table
while it builds). Each backend applies the missing versions at open, in one transaction, under
a lock (SQLite's write lock; a Postgres advisory lock), so processes opening the store at once
migrate it exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MIGRATIONS", "Migration"]


@dataclass(frozen=True)
class Migration:
    """One schema version, as each backend spells it."""

    sqlite: str
    postgres: str


MIGRATIONS: tuple[Migration, ...] = (
    # runs and checkpoints, recordings for replay, the model-call cache, agent memory
    Migration(
        sqlite="""
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
        postgres="""
    CREATE TABLE runs (
        run_id       TEXT PRIMARY KEY,
        workflow     TEXT NOT NULL,
        fingerprint  TEXT NOT NULL,
        nodes        TEXT NOT NULL,
        parameters   TEXT NOT NULL,
        status       TEXT NOT NULL,
        started      DOUBLE PRECISION NOT NULL,
        finished     DOUBLE PRECISION,
        checkpoint   INTEGER NOT NULL DEFAULT 0,
        recorded     INTEGER NOT NULL DEFAULT 0,
        record       TEXT
    );
    CREATE INDEX runs_started ON runs (started);
    CREATE TABLE checkpoints (
        run_id    TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        node_id   TEXT NOT NULL,
        encoding  TEXT NOT NULL,
        outputs   BYTEA NOT NULL,
        finished  DOUBLE PRECISION NOT NULL,
        attempts  INTEGER NOT NULL,
        PRIMARY KEY (run_id, node_id)
    );
    CREATE TABLE recordings (
        run_id      TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        node_id     TEXT NOT NULL,
        kind        TEXT NOT NULL,
        key         TEXT NOT NULL,
        occurrence  INTEGER NOT NULL,
        request     TEXT NOT NULL,
        response    TEXT NOT NULL,
        -- the order the calls were made in (SQLite's rowid)
        seq         BIGINT GENERATED BY DEFAULT AS IDENTITY,
        PRIMARY KEY (run_id, node_id, kind, key, occurrence)
    );
    CREATE TABLE cache (
        key       TEXT PRIMARY KEY,
        kind      TEXT NOT NULL,
        response  TEXT NOT NULL,
        created   DOUBLE PRECISION NOT NULL,
        expires   DOUBLE PRECISION
    );
    CREATE TABLE memories (
        id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        namespace  TEXT NOT NULL,
        session    TEXT NOT NULL,
        text       TEXT NOT NULL,
        created    DOUBLE PRECISION NOT NULL,
        embedding  BYTEA,
        -- the full-text index: English stems, stopwords left out
        words      TSVECTOR GENERATED ALWAYS AS (to_tsvector('english', text)) STORED
    );
    CREATE INDEX memories_scope ON memories (namespace, session, created);
    CREATE INDEX memories_words ON memories USING GIN (words);
    """,
    ),
    # approvals asked by an access policy (kaizen.observe.policy)
    Migration(
        sqlite="""
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
        postgres="""
    CREATE TABLE approvals (
        run_id     TEXT NOT NULL,
        node_id    TEXT NOT NULL,
        approver   TEXT NOT NULL,
        status     TEXT NOT NULL,
        decided_by TEXT,
        requested  DOUBLE PRECISION NOT NULL,
        decided    DOUBLE PRECISION,
        PRIMARY KEY (run_id, node_id)
    );
    """,
    ),
    # kaizen serve (kaizen.store.served): the runs it started and every event it streamed
    Migration(
        sqlite="""
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
        postgres="""
    CREATE TABLE served_runs (
        run_id      TEXT PRIMARY KEY,
        target      TEXT NOT NULL,
        status      TEXT NOT NULL,
        parameters  TEXT NOT NULL,
        created     DOUBLE PRECISION NOT NULL,
        finished    DOUBLE PRECISION,
        results     TEXT,
        error       TEXT,
        record      TEXT,
        cancel      INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX served_runs_created ON served_runs (created);
    CREATE TABLE served_events (
        run_id  TEXT NOT NULL REFERENCES served_runs (run_id) ON DELETE CASCADE,
        seq     INTEGER NOT NULL,
        kind    TEXT NOT NULL,
        data    TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    -- servers following another's run hear of its new events and of cancels at once
    -- (LISTEN/NOTIFY; Postgres sends one notice per channel and payload per transaction)
    CREATE FUNCTION kaizen_served_event() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('kaizen_served', NEW.run_id);
        RETURN NULL;
    END $$;
    CREATE TRIGGER served_events_added AFTER INSERT ON served_events
        FOR EACH ROW EXECUTE FUNCTION kaizen_served_event();
    CREATE TRIGGER served_runs_changed AFTER UPDATE OF status ON served_runs
        FOR EACH ROW EXECUTE FUNCTION kaizen_served_event();
    CREATE FUNCTION kaizen_served_cancel() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.cancel = 1 AND OLD.cancel = 0 THEN
            PERFORM pg_notify('kaizen_cancel', NEW.run_id);
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER served_runs_cancelled AFTER UPDATE OF cancel ON served_runs
        FOR EACH ROW EXECUTE FUNCTION kaizen_served_cancel();
    """,
    ),
    # memory search stems words ("summaries" meets "summary"): SQLite's index is rebuilt with the
    # porter tokenizer from the memories table (Postgres' `words` column stems from the start)
    Migration(
        sqlite="""
    DROP TABLE IF EXISTS memories_fts;
    CREATE VIRTUAL TABLE memories_fts USING fts5 (
        text, content='memories', content_rowid='id', tokenize='porter unicode61'
    );
    INSERT INTO memories_fts (memories_fts) VALUES ('rebuild');
    """,
        postgres="""
    -- nothing: the memories table's words column stems from the start
    """,
    ),
    # pauses for a person (kaizen.store.interrupts): what each waiting node asked, the answers
    # and who gave them, and the state a paused node saved to continue from
    Migration(
        sqlite="""
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
        postgres="""
    CREATE TABLE interrupts (
        run_id       TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        id           TEXT NOT NULL,
        node_id      TEXT NOT NULL,
        idx          INTEGER NOT NULL,
        kind         TEXT NOT NULL,
        payload      TEXT NOT NULL,
        schema       TEXT,
        tool         TEXT,
        args         TEXT,
        created      DOUBLE PRECISION NOT NULL,
        answered     INTEGER NOT NULL DEFAULT 0,
        answer       TEXT,
        answered_by  TEXT,
        answered_at  DOUBLE PRECISION,
        PRIMARY KEY (run_id, id)
    );
    CREATE TABLE paused_nodes (
        run_id   TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        node_id  TEXT NOT NULL,
        state    TEXT NOT NULL,
        PRIMARY KEY (run_id, node_id)
    );
    """,
    ),
    # kaizen serve's leases (kaizen.store.served): the worker that executes a served run, and
    # until when it holds it; a worker that dies stops renewing, and another takes the run over
    Migration(
        sqlite="""
    ALTER TABLE served_runs ADD COLUMN owner TEXT;
    ALTER TABLE served_runs ADD COLUMN lease_until REAL;
    """,
        postgres="""
    ALTER TABLE served_runs ADD COLUMN owner TEXT;
    ALTER TABLE served_runs ADD COLUMN lease_until DOUBLE PRECISION;
    """,
    ),
    # the run browser (kaizen.serve.ui): each workflow's drawable shape, one row per version
    # (fingerprint), so a run can be drawn by a process that has not got the workflow; and the
    # runs list filtered by status or workflow, newest first, as an index walk
    Migration(
        sqlite="""
    CREATE TABLE IF NOT EXISTS workflows (
        fingerprint  TEXT PRIMARY KEY,
        name         TEXT NOT NULL,
        shape        TEXT NOT NULL  -- JSON: kaizen.workflow.shape.WorkflowShape
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS runs_status ON runs (status, started);
    CREATE INDEX IF NOT EXISTS runs_workflow ON runs (workflow, started);
    CREATE INDEX IF NOT EXISTS served_runs_status ON served_runs (status, created);
    """,
        postgres="""
    CREATE TABLE IF NOT EXISTS workflows (
        fingerprint  TEXT PRIMARY KEY,
        name         TEXT NOT NULL,
        shape        TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS runs_status ON runs (status, started);
    CREATE INDEX IF NOT EXISTS runs_workflow ON runs (workflow, started);
    CREATE INDEX IF NOT EXISTS served_runs_status ON served_runs (status, created);
    """,
    ),
)
