"""The embedded store: one SQLite file for runs, node checkpoints, agent memory, the model-call
cache and recordings for replay (see docs/state.md).

`db.py` owns the file (`Store`: WAL, a connection per thread, migrations, typed errors),
`encode.py` how values are stored, `writer.py` the background writer that commits checkpoint
rows in batches, `runs.py` runs and checkpoints (`Checkpointer`, the fingerprint), `calls.py`
the cache, recordings and replay of model and tool calls, `memory.py` agent memory.
"""

from __future__ import annotations

from kaizen.store.db import Store, default_store_path

__all__ = ["Store", "default_store_path"]
