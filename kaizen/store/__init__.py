"""The store: runs, node checkpoints, served runs and their events, leases, interrupts, agent
memory, the model-call cache and recordings for replay, in one SQLite file or one Postgres
database (see docs/state.md and docs/scale.md).

`db.py` is the interface every feature uses (`Store`, `Store.open`), `schema.py` the versioned
schema of both backends, `sqlite.py` the SQLite file (WAL, a connection per thread, typed
errors), `postgres.py` the Postgres database (a connection pool, advisory locks, LISTEN/NOTIFY;
imported only when a ``postgresql://`` store is opened); this package picks the backend for a
location (`Store.backend_for`). Above them, knowing no backend: `encode.py` how values are
stored, `writer.py` the background writer that commits checkpoint rows in batches, `runs.py`
runs and checkpoints (`Checkpointer`, the fingerprint), `calls.py` the cache, recordings and
replay of model and tool calls, `memory.py` agent memory, `served.py` served runs, events and
leases, `interrupts.py` pauses for a person, `browse.py` what the run browser reads.
"""

from __future__ import annotations

from kaizen.store.db import Store, default_store_path, is_store_url

__all__ = ["Store", "default_store_path"]


def _backend_for(location: str) -> type[Store]:
    """Postgres for a ``postgresql://`` URL, else SQLite (a file, or ``":memory:"``)."""
    if is_store_url(location):
        from kaizen.store.postgres import PostgresStore

        return PostgresStore
    from kaizen.store.sqlite import SqliteStore

    return SqliteStore


Store.backend_for = staticmethod(_backend_for)
