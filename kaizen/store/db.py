"""`Store`: the one database behind runs, checkpoints, served runs and their events, leases,
interrupts, memory, the cache and recordings: one interface, two backends.

Which backend: a file path (or ``":memory:"``) is SQLite (`kaizen.store.sqlite`, the embedded
default: nothing to start, a file a user can copy); a ``postgresql://user@host:port/db`` URL is
Postgres (`kaizen.store.postgres`, extra ``postgres``: several servers and a Ray cluster share
it). Where it lives when no feature names it: ``$KAIZEN_STORE_URL``, else
``$KAIZEN_HOME/kaizen.db``, else ``.kaizen/kaizen.db`` under the current directory.
`Store.open(where)` returns one shared `Store` per location in a process; `Store(where)` a new
one (with backend options: SQLite's `max_size`, Postgres' pool size).

What the features above see, whichever the backend (they never ask which):

- `write()`: one write transaction, a context manager giving a connection whose `execute(sql,
  parameters)` and `executemany` take SQL with ``?`` placeholders and return a cursor
  (`fetchone`, `fetchall`, `rowcount`, iteration). Everything inside lands whole or not at all,
  and writers are serialised (SQLite's write lock; a Postgres advisory lock): a read followed by
  a write inside one transaction sees no other writer in between, on both backends.
- `read(sql, parameters)`: the rows of one query; readers never wait for writers.
- SQL that both dialects share: standard SQL, ``INSERT ... ON CONFLICT``, ``RETURNING``. What
  differs is asked of the store: `json_number` (a number inside a JSON column), the memory text
  index (`memory_stems`, `memory_frequencies`, `memory_matches`) and `follow` (hearing
  another process's news of a served run).
- Failures are typed errors naming the store (`path`, never a password) and what to do:
  `StoreCorruptedError`, `StoreLockedError`, `StoreFullError`, `StoreUnavailableError`,
  `StorePermissionError`, `StoreError` otherwise.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from kaizen import process
from kaizen.errors import ConfigError, StoreError
from kaizen.store.schema import MIGRATIONS, Migration

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "MIGRATIONS",
    "Follower",
    "Migration",
    "Store",
    "StorePath",
    "default_store_location",
    "default_store_path",
    "is_store_url",
    "password_of",
    "redact_url",
    "run_store",
    "store_of_run",
]

StorePath = str | os.PathLike[str]
DEFAULT_BUSY_TIMEOUT = 30.0  # seconds a writer waits for another one before StoreLockedError
URL_SCHEMES = ("postgresql://", "postgres://")

_shared: dict[str, Store] = {}
_shared_lock = threading.Lock()


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


def default_store_location() -> str:
    """Where the default store is: ``$KAIZEN_STORE_URL`` when set, else `default_store_path`
    (absolute)."""
    url = os.environ.get("KAIZEN_STORE_URL", "").strip()
    return url or str(default_store_path().expanduser().absolute())


def is_store_url(where: object) -> bool:
    """Whether `where` names a database server (``postgresql://...``) rather than a file."""
    return isinstance(where, str) and where.strip().lower().startswith(URL_SCHEMES)


def redact_url(url: str) -> str:
    """`url` with its password masked (``postgresql://user:***@host/db``)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (parsed on access: a bad port raises here)
    except ValueError:  # not a URL urllib can parse: mask whatever stands before the '@'
        return _masked(url)
    if not parts.netloc:  # "postgresql:/user:pw@host/db" (a folded '//'): no netloc to read
        return _masked(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def password_of(url: str) -> str:
    """The password in a store URL ("" when it has none), to scrub from messages."""
    try:
        return urlsplit(url).password or ""
    except ValueError:
        found = _CREDENTIALS.search(url)
        return found.group(2) if found else ""


# "scheme://user:password@" (or a folded "scheme:/user:password@"), for URLs urllib cannot read
_CREDENTIALS = re.compile(r"(:/+[^:/@]*:)([^@]*)@")


def _masked(url: str) -> str:
    return _CREDENTIALS.sub(r"\1***@", url)


def _location(where: StorePath | None) -> str:
    """The key of a store location: a URL as given, a file as its absolute path."""
    if where is None:
        return default_store_location()
    if is_store_url(where):
        return str(where).strip()
    text = str(where).strip()
    if text.lower().startswith(tuple(scheme[:-1] for scheme in URL_SCHEMES)):
        # Path("postgresql://...") folds the "//": it would become an SQLite file in a folder
        # named after the server
        raise ConfigError(
            f"store {redact_url(text)!r} looks like a Postgres URL whose '//' was folded (made "
            "a Path?): pass the URL as a str, e.g. 'postgresql://user@host/db'"
        )
    return str(Path(where).expanduser().absolute())


class Store:
    """The store interface (see the module docstring); `Store(where)` builds the backend that
    `where` names, `Store.open(where)` the process's shared one."""

    dialect: ClassVar[str]  # "sqlite" or "postgres"
    path: str  # where it is, for messages and keys: a file, or the URL without its password
    # the recordings table's column that orders rows as they were inserted (SQLite's rowid)
    insertion_order: ClassVar[str] = "rowid"
    in_memory: bool = False
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT

    # the backend class for a location (a URL, or an absolute path): provided by the store
    # package (kaizen/store/__init__.py), which knows the backends; this interface does not
    backend_for: ClassVar[Callable[[str], type[Store]]]

    def __new__(cls, path: StorePath | None = None, *args: Any, **options: Any) -> Store:
        if cls is Store:
            cls = Store.backend_for(default_store_location() if path is None else str(path))
        return super().__new__(cls)

    @classmethod
    def open(cls, path: StorePath | Store | None = None) -> Store:
        """The process's `Store` for `path` (None: the default location); a `Store` is
        returned as it is. One object per location, so its connections and caches are
        shared."""
        if isinstance(path, Store):
            return path
        if path is not None and str(path) == ":memory:":
            return Store(path)
        key = _location(path)
        with _shared_lock:
            store = _shared.get(key)
            if store is None:
                store = _shared[key] = Store(key)
            return store

    def __repr__(self) -> str:
        return f"Store({self.path!r})"

    # -- what every backend provides ---------------------------------------------------------------

    def write(self, *, idempotent: bool = False) -> AbstractContextManager[Any]:
        """One write transaction: everything inside lands together, or nothing does.
        `idempotent`: the caller promises its statements have the same effect whether the
        transaction lands once or twice (inserts ``ON CONFLICT DO NOTHING``, updates to given
        values), so a server store may send the commit with them (one round trip) and, if the
        connection is lost then, simply send them again."""
        raise NotImplementedError

    def read(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        """The rows of one query (``?`` placeholders)."""
        raise NotImplementedError

    def changed(self, sql: str, parameters: Sequence[Any] = ()) -> int:
        """One statement in a write transaction of its own: how many rows it changed (a
        compare-and-set says whether it won by this)."""
        with self.write() as db:
            return int(db.execute(sql, parameters).rowcount)

    def translate(self, exc: Exception, doing: str) -> StoreError:
        """A driver's error as the typed error a user can act on."""
        raise NotImplementedError

    def close(self) -> None:
        """Let go of this store's connections (reopened on next use)."""
        raise NotImplementedError

    def release(self) -> None:
        """This process forgets the store (`kaizen.process.reset`): a server's connections
        are closed; a file's close with their threads."""

    def json_number(self, column: str, *keys: str) -> str:
        """A SQL expression: the number at `keys` inside the JSON text in `column` (NULL when
        absent)."""
        raise NotImplementedError

    # the memory text index (kaizen.store.memory): words as the index spells them, how many
    # memories hold each, and the best matches of a scope

    def memory_stems(self, words: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """Each of `words` as the memory index spells it (its stems; none for a word the
        index leaves out)."""
        raise NotImplementedError

    def memory_frequencies(self, stems: Sequence[str]) -> dict[str, int]:
        """How many memories (of every scope) hold each of `stems`."""
        raise NotImplementedError

    def memory_matches(
        self, words: Sequence[str], namespace: str, session: str, since: float | None, limit: int
    ) -> list[tuple[int, float]]:
        """The scope's best `limit` memories holding any of `words` in any form (the index
        stems them as it stems memories; created at or after
        `since`, when given), best first, each with a score that is equal for equally good
        matches."""
        raise NotImplementedError

    def follow(self, channel: str, key: str | None = None) -> Follower:
        """Hear another process change served run `key` (any run, for None) on `channel`
        (``"kaizen_served"``: new events or status; ``"kaizen_cancel"``: a cancel asked), from
        now on. Called on an event loop; `close()` it when done. A store that cannot hear other
        processes (SQLite) gives a follower that only waits out its timeout."""
        return Follower()


class Follower:
    """News of served runs from other processes (`Store.follow`); the caller reads the store
    after each `wait`, whatever it returned, so a notice missed costs one timeout, nothing more.
    This base hears nothing (SQLite): `wait` waits out the timeout."""

    async def wait(self, timeout: float) -> bool:
        """True once a notice came (since the last wait), False after `timeout` seconds."""
        await asyncio.sleep(timeout)
        return False

    def close(self) -> None:
        """Stop hearing notices."""

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _forget_shared() -> None:
    with _shared_lock:
        stores = list(_shared.values())
        _shared.clear()
    for store in stores:
        store.release()


process.register("store.db", _forget_shared)
