"""`BatchWriter`: commits many small writes to a `Store` in one transaction each batch (group
commit), on a thread of its own, so the thread that asks for a write never waits for SQLite.

Who uses it: the `Checkpointer` (`kaizen.store.runs`) hands it each completed node's encoded
outputs from the driver thread, and waits for them (`flush`) when the run ends.

How it works. `attach(store)` gives the store's writer (one per `Store` and process, its thread
started on demand) and counts one more user; `submit(sql, parameters, owner)` queues a write and
returns at once; a write must be idempotent (an insert ``ON CONFLICT``, an update to given
values): the same whether it lands once or twice. The thread takes everything queued, runs it
in one transaction (consecutive writes with the same SQL through one `executemany`), commits,
then takes what queued meanwhile: the busier the run, the bigger the batches. `flush()` returns
once everything submitted before it is committed or has failed. `detach(writer)` when done; a
writer with no users and nothing to do for `IDLE_SECONDS` ends its thread.

Failures. A batch that fails is retried write by write, each in its own transaction, so one write
that cannot land (a full disk, a too-big value) does not take the others down with it; each
failure goes to its write's `owner.write_failed(error)` (a typed `StoreError`). A lock held past
the busy timeout fails the whole batch at once (retrying each write would wait again).

Durability window. A write is durable once its batch commits: usually within a few milliseconds
of `submit` (the thread needs the GIL, which a busy driver thread gives up every
`sys.getswitchinterval()`, 5 ms). A process killed before then loses the writes of that batch,
never a part of one: each batch is one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import queue
import threading
from typing import TYPE_CHECKING, Any, Protocol

from kaizen import process
from kaizen.errors import StoreLockedError

if TYPE_CHECKING:
    from kaizen.store.db import Store

__all__ = ["IDLE_SECONDS", "BatchWriter", "WriteOwner", "attach", "detach"]

IDLE_SECONDS = 5.0  # a writer with no users ends its thread after this long with nothing to do


class WriteOwner(Protocol):
    """Whoever submitted a write, told when it could not be stored."""

    def write_failed(self, error: Exception) -> None: ...


_Write = tuple[str, tuple[Any, ...], WriteOwner]

_writers: dict[int, BatchWriter] = {}  # id(store) -> its writer, while it has a thread
_writers_lock = threading.Lock()


def attach(store: Store) -> BatchWriter:
    """The writer of `store` (its thread running), counted as used until `detach`."""
    with _writers_lock:
        writer = _writers.get(id(store))
        if writer is None or writer.store is not store or writer.pid != os.getpid():
            writer = _writers[id(store)] = BatchWriter(store)  # (a forked child needs its own)
        writer.users += 1
        return writer


def detach(writer: BatchWriter) -> None:
    """`writer` is no longer used by the caller (see `attach`)."""
    with _writers_lock:
        writer.users -= 1


class BatchWriter:
    """The writing thread of one store (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.users = 0  # guarded by _writers_lock
        self.pid = os.getpid()
        self._queue: queue.SimpleQueue[_Write | threading.Event | _LoopWakeup] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._work, name=f"kaizen-store-writer {store.path}", daemon=True
        )
        self._thread.start()

    def submit(self, sql: str, parameters: tuple[Any, ...], owner: WriteOwner) -> None:
        """Queue one write (a statement and its parameters); returns at once."""
        self._queue.put((sql, parameters, owner))

    def flush(self) -> None:
        """Wait until every write submitted before this call is committed or has failed."""
        done = threading.Event()
        self._queue.put(done)
        done.wait()

    async def aflush(self) -> None:
        """`flush` for a coroutine: the event loop goes on meanwhile (no thread is held)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.put(_LoopWakeup(loop, done))
        await done

    # -- the writing thread ------------------------------------------------------------------------

    def _work(self) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        while True:
            try:
                batch = [get(timeout=IDLE_SECONDS)]
            except queue.Empty:
                if self._may_end():
                    return
                continue
            while True:
                try:
                    batch.append(get_nowait())
                except queue.Empty:
                    break
            writes = [item for item in batch if type(item) is tuple]
            if writes:
                self._commit(writes)
            for item in batch:
                if isinstance(item, threading.Event | _LoopWakeup):
                    item.set()

    def _may_end(self) -> bool:
        with _writers_lock:
            if self.users or not self._queue.empty():
                return False
            if _writers.get(id(self.store)) is self:
                del _writers[id(self.store)]
            return True

    def _commit(self, writes: list[_Write]) -> None:
        try:
            # every write submitted here lands the same whether applied once or twice (inserts
            # ON CONFLICT, updates to given values): a server store may send it with its commit
            with self.store.write(idempotent=True) as db:
                for sql, group in itertools.groupby(writes, key=lambda write: write[0]):
                    db.executemany(sql, [write[1] for write in group])
            return
        except StoreLockedError as exc:
            for _, _, owner in writes:
                _tell(owner, exc)
            return
        except Exception:
            pass  # retried one by one below, where each failure is told to its owner
        for sql, parameters, owner in writes:
            try:
                with self.store.write(idempotent=True) as db:
                    db.execute(sql, parameters)
            except Exception as exc:
                _tell(owner, exc)


class _LoopWakeup:
    """Resolves an event loop's future from the writer's thread (`BatchWriter.aflush`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
        self.loop, self.future = loop, future

    def set(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            self.loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


def _tell(owner: WriteOwner, error: Exception) -> None:
    with contextlib.suppress(Exception):  # an owner's bug must not stop the store's writer
        owner.write_failed(error)


process.register("store.writer", _writers.clear, fork_only=True)  # idle writers end anyway
