"""Shared fixtures. `fault_server`: a real OpenAI-compatible server on loopback; every test
starts and ends with the process-wide state forgotten (`kaizen.process.reset`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kaizen import process
from kaizen.testing.fault_server import FaultServer


@pytest.fixture(autouse=True)
def fresh_process_state() -> Iterator[None]:
    """No breaker, rate limiter, pool, process hook or default agent registry leaks from one
    test into another."""
    process.reset()
    yield
    process.reset()


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    """A running `FaultServer` with no latency and no faults queued; always stopped afterwards."""
    server = FaultServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
