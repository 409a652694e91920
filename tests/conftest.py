"""Shared fixtures and rules for the whole suite.

- `fault_server`: a real OpenAI-compatible server on loopback.
- `serve`: ``serve(target)`` starts a real `kaizen serve` app (or any ASGI app) on loopback and
  gives its URL; every server it started stops after the test.
- Every test starts and ends with the process-wide state forgotten (`kaizen.process.reset`).
- `in_ci()`: whether ``CI`` is set to a true value. Under CI a `pytest.importorskip` of a missing
  dependency FAILS instead of skipping (the hooks below): the test command installs every dev
  dependency, so a skip there would hide a broken install. On a developer's machine it skips.
- The ``slow`` marker (registered in pyproject.toml) tags the tests that start Ray, load the
  embedded model, execute notebooks or kill subprocesses; the test command runs them all, and
  ``-m "not slow"`` leaves them out for a quick round.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from kaizen import process
from kaizen.testing.fault_server import FaultServer

# the text `pytest.importorskip` gives its skip ("could not import 'mcp': No module named ...")
_IMPORT_SKIP = "could not import "


def in_ci() -> bool:
    """True when the ``CI`` variable is set to anything but an empty or false value."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off")


def _skipped_for_a_missing_import(report: Any) -> str | None:
    """The skip reason when `report` is a skip by `pytest.importorskip`, else None."""
    if not report.skipped or not isinstance(report.longrepr, tuple):
        return None
    reason = str(report.longrepr[-1])
    return reason if _IMPORT_SKIP in reason else None


def _fail_under_ci(report: Any) -> None:
    reason = _skipped_for_a_missing_import(report)
    if reason is None or not in_ci():
        return
    report.outcome = "failed"
    report.longrepr = (
        f"{reason.removeprefix('Skipped: ')}, but CI is set: the test command installs every dev "
        "dependency (`make setup`, the 'dev' extra); a skip here would hide a broken install"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    """A module-level `importorskip` that skips a whole file fails it under CI."""
    outcome = yield
    _fail_under_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Generator[None, Any, None]:
    """An `importorskip` inside a test or fixture fails that test under CI."""
    outcome = yield
    _fail_under_ci(outcome.get_result())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests of the embedded model (marked ``local_model``, or using an ``embedded_model``
    fixture) are ``slow``: they load llama.cpp and decode for real."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if item.get_closest_marker("local_model") or "embedded_model" in fixtures:
            item.add_marker(pytest.mark.slow)


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


@pytest.fixture
def serve(tmp_path: Any) -> Iterator[Any]:
    """`serve(target)`: the URL of a server of `target`, an app as it is, or a Kaizen target
    served by `create_app` with a store of its own (needs the serve extra)."""
    from starlette.applications import Starlette

    from kaizen.serve.app import create_app
    from kaizen.serve.server import BackgroundServer

    servers: list[BackgroundServer] = []

    def start(target: Any) -> str:
        if isinstance(target, Starlette):  # an app (FastAPI) as it is
            app = target
        else:
            app = create_app(target, store=tmp_path / f"runs-{len(servers)}.db", keys=[])
        servers.append(BackgroundServer(app).start())
        return servers[-1].url

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A throwaway PostgreSQL server for the session (`kaizen.testing.postgres`). Without one,
    the tests that need it skip with the reason, except under CI, where they fail."""
    from kaizen.testing.postgres import PostgresUnavailable, TemporaryPostgres

    try:
        import psycopg  # noqa: F401

        server = TemporaryPostgres().start()
    except (ImportError, PostgresUnavailable) as exc:
        reason = f"no PostgreSQL for the Postgres store tests: {exc}"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def store_location(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """Where a test's store lives, once per backend: a SQLite file, then a new database on the
    session's throwaway PostgreSQL server. The store suite takes this instead of a file."""
    if request.param == "sqlite":
        return str(tmp_path / "kaizen.db")
    return str(request.getfixturevalue("postgres_server").database())
