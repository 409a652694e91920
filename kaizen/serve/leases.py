"""Leases: how the workers of `kaizen serve` on one store share its runs, and take over the runs
of a worker that died.

Each worker has an `owner` id (host, process, a random part). It holds a lease on every run it
executes (`kaizen.store.served`: ``owner``, ``lease_until``), written with the run, and renews
all of them every `interval` seconds to `expiry` seconds ahead. In the same beat it claims the
runs whose lease expired (their worker stopped renewing: it died, or hangs), and the manager
resumes each from its checkpoints: the nodes that completed are not run again, its events go on
from the last one stored. A run waiting for a person holds no lease (nobody executes it; the
worker that gets its answers takes one). A worker that finds it no longer holds a run it is
executing (it was too slow to renew, and another took it) stops executing it.

The clock is the store's readers' wall clock (`time.time()`): workers on one store must agree
on the time to within a fraction of `expiry`.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from kaizen.store.db import Store
from kaizen.store.served import ClaimedRun, claim_expired, renew_leases

__all__ = ["DEFAULT_LEASE_EXPIRY", "DEFAULT_LEASE_INTERVAL", "Leases"]

DEFAULT_LEASE_INTERVAL = 2.0  # seconds between renewals (and scans for expired leases)
DEFAULT_LEASE_EXPIRY = 10.0  # seconds a lease lasts unless renewed


@dataclass
class Leases:
    """One worker's leases on one store (see the module docstring)."""

    store: Store
    interval: float = DEFAULT_LEASE_INTERVAL
    expiry: float = DEFAULT_LEASE_EXPIRY
    owner: str = ""

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.expiry <= self.interval:
            raise ValueError(
                f"a lease's expiry ({self.expiry} s) must be longer than the interval it is "
                f"renewed at ({self.interval} s), and both positive"
            )
        if not self.owner:
            self.owner = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"

    def until(self) -> float:
        """When a lease taken or renewed now expires."""
        return time.time() + self.expiry

    def renew(self) -> set[str]:
        """Renew this worker's leases; the runs it still holds (blocking: run it in a thread)."""
        return renew_leases(self.store, self.owner, self.until())

    def claim(self) -> list[ClaimedRun]:
        """Take over the runs whose lease expired (blocking: run it in a thread)."""
        now = time.time()
        return claim_expired(self.store, self.owner, now + self.expiry, now)
