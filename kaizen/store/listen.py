"""LISTEN/NOTIFY for a Postgres store: one listening connection per store and process.

`Listener` holds a LISTEN connection on a daemon thread (on `CHANNELS`, which the schema's
triggers notify: `kaizen_served` on every new event or status change of a served run,
`kaizen_cancel` when a cancel is asked) and wakes the `PostgresFollower`s waiting for a notice on
a channel, for one key or any. A lost connection is made again; followers meanwhile fall back
to their timeout, so a missed notice delays a waiter, never loses what is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

from kaizen.store.db import Follower

__all__ = ["CHANNELS", "Listener", "PostgresFollower"]

CHANNELS = ("kaizen_served", "kaizen_cancel")


class PostgresFollower(Follower):
    """Hears `channel` notices for `key` (any, for None) from the store's listener."""

    def __init__(self, listener: Listener, channel: str, key: str | None) -> None:
        self.listener = listener
        self.channel = channel
        self.key = key
        self.loop = asyncio.get_running_loop()
        self.heard = asyncio.Event()

    def wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            self.loop.call_soon_threadsafe(self.heard.set)

    async def wait(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self.heard.wait(), timeout)
        except TimeoutError:
            return False
        self.heard.clear()
        return True

    def close(self) -> None:
        self.listener.forget(self)


class Listener:
    """One LISTEN connection (made by `connect`, autocommit) on a daemon thread named after the
    store (`name`, without its password): wakes the followers of each notice."""

    def __init__(self, connect: Callable[[], Any], name: str) -> None:
        self.connect = connect
        self.followers: set[PostgresFollower] = set()
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(
            target=self._listen, name=f"kaizen-store-listener {name}", daemon=True
        )
        self.thread.start()

    def alive(self) -> bool:
        return self.thread.is_alive() and not self.stopped.is_set()

    def follower(self, channel: str, key: str | None) -> Follower:
        follower = PostgresFollower(self, channel, key)
        with self.lock:
            self.followers.add(follower)
        return follower

    def forget(self, follower: PostgresFollower) -> None:
        with self.lock:
            self.followers.discard(follower)

    def stop(self) -> None:
        self.stopped.set()

    def _listen(self) -> None:
        while not self.stopped.is_set():
            try:
                connection = self.connect()
            except Exception:
                self.stopped.wait(1.0)
                continue
            try:
                for channel in CHANNELS:
                    connection.execute(f"LISTEN {channel}")
                while not self.stopped.is_set():
                    for notice in connection.notifies(timeout=0.5):
                        self._heard(notice.channel, notice.payload)
            except Exception:
                self.stopped.wait(0.2)  # lost: listen again on a new connection
            finally:
                with contextlib.suppress(Exception):
                    connection.close()

    def _heard(self, channel: str, payload: str) -> None:
        with self.lock:
            woken = [
                f
                for f in self.followers
                if f.channel == channel and (f.key is None or f.key == payload)
            ]
        for follower in woken:
            follower.wake()
