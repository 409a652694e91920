"""What only a server store can get wrong: opening it (a wrong URL, a refused connection, a wrong
password, a missing database, a role without grants), processes migrating it at once, a
connection lost mid-write or mid-read, the server restarted under a run, and credentials kept
out of every message. A real throwaway PostgreSQL (tests/conftest.py `postgres_server`); the
features themselves run on both backends through `store_location` in the store suite."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kaizen import LocalRuntime, WorkflowBuilder
from kaizen.errors import (
    ConfigError,
    StoreError,
    StoreLockedError,
    StorePermissionError,
    StoreUnavailableError,
)
from kaizen.store import Store
from kaizen.store.postgres import PostgresStore, redact_url, to_pyformat
from kaizen.store.schema import MIGRATIONS

pytest.importorskip("psycopg")


@pytest.fixture
def url(postgres_server: Any) -> str:
    return str(postgres_server.database())


def _password_free(text: str, server: Any) -> None:
    assert server.password not in text, f"the password leaked into: {text[:300]}"


# -- opening ---------------------------------------------------------------------------------------


def test_a_wrong_password_is_a_typed_error_that_never_shows_it(postgres_server: Any) -> None:
    wrong = postgres_server.database_url("postgres", password="not-the-password")
    with pytest.raises(StoreUnavailableError) as caught:
        Store(wrong)
    message = str(caught.value)
    assert "password authentication failed" in message and "check the URL" in message
    assert "not-the-password" not in message and caught.value.path is not None
    assert "not-the-password" not in caught.value.path and ":***@" in caught.value.path


@pytest.mark.parametrize(
    ("where", "said"),
    [
        ("postgresql://postgres:pw@127.0.0.1:1/postgres", "Connection refused"),
        ("postgresql://postgres:pw@127.0.0.1:PORT/no_such_database", "does not exist"),
        ("postgresql://postgres:pw@[bad/x", "could not connect"),
    ],
    ids=["refused", "no database", "unparseable"],
)
def test_an_unreachable_store_says_which_and_what_to_check(
    postgres_server: Any, where: str, said: str
) -> None:
    where = where.replace("pw", postgres_server.password).replace("PORT", str(postgres_server.port))
    with pytest.raises(StoreUnavailableError, match=said) as caught:
        Store(where)
    _password_free(str(caught.value), postgres_server)
    assert "store postgresql://" in str(caught.value)


def test_a_role_without_grants_gets_a_permission_error_naming_what_to_grant(
    postgres_server: Any, url: str
) -> None:
    name = url.rsplit("/", 1)[1]
    postgres_server.execute(
        "CREATE ROLE reader LOGIN PASSWORD 'reader-secret';"
        f'REVOKE CREATE ON SCHEMA public FROM PUBLIC; GRANT CONNECT ON DATABASE "{name}" TO reader',
        database=name,
    )
    as_reader = postgres_server.database_url(name, user="reader", password="reader-secret")
    with pytest.raises(StorePermissionError, match="grant") as caught:
        Store(as_reader)
    assert "reader-secret" not in str(caught.value)
    Store(url)  # the owner migrates it; the reader may then open it, and reads are refused
    with pytest.raises(StorePermissionError):
        Store(as_reader).read("SELECT count(*) FROM runs")


MIGRATOR = textwrap.dedent(
    """
    import sys
    from kaizen.store import Store
    Store(sys.argv[1]).read("SELECT count(*) FROM runs")
    print("ok")
    """
)


def test_processes_opening_a_new_database_at_once_migrate_it_exactly_once(url: str) -> None:
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATOR, url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for process in starters:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0 and out.strip() == "ok", err
    store = Store(url)
    assert store.read("SELECT version FROM kaizen_schema") == [(len(MIGRATIONS),)]


def test_a_store_of_a_newer_schema_is_refused_rather_than_misread(url: str) -> None:
    with Store(url).write() as db:  # (opened and migrated, then marked as from the future)
        db.execute("UPDATE kaizen_schema SET version = ?", (len(MIGRATIONS) + 1,))
    with pytest.raises(StoreError, match="newer than this Kaizen knows"):
        Store(url)


def test_writers_wait_for_each_other_and_give_up_with_a_locked_error(url: str) -> None:
    """The writers' advisory lock serialises writes as SQLite does; a writer that waits past
    its busy timeout gets StoreLockedError, and what the holder wrote lands."""
    holder, waiter = Store(url), Store(url, busy_timeout=0.2)
    with holder.write() as db:
        db.execute("INSERT INTO cache VALUES ('held', 'model', '1', 0, NULL)")
        with (
            pytest.raises(StoreLockedError, match="another writer held the store"),
            waiter.write() as other,
        ):
            other.execute("INSERT INTO cache VALUES ('waited', 'model', '1', 0, NULL)")
    assert holder.read("SELECT key FROM cache") == [("held",)]
    with waiter.write() as other:  # free again
        other.execute("INSERT INTO cache VALUES ('later', 'model', '1', 0, NULL)")
    assert len(holder.read("SELECT key FROM cache")) == 2


# -- connections lost ------------------------------------------------------------------------------


def _kill_connections(server: Any, url: str) -> None:
    """Terminate every connection to `url`'s database but the caller's (a network cut)."""
    name = url.rsplit("/", 1)[1]
    server.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        f" WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    )


def test_a_connection_lost_mid_write_is_replayed_once_and_lands_whole(
    postgres_server: Any, url: str
) -> None:
    store = Store(url)
    with store.write() as db:
        db.execute("INSERT INTO cache VALUES ('one', 'model', '1', 0, NULL)")
        assert db.execute("SELECT count(*) FROM cache").fetchone() == (1,)
        _kill_connections(postgres_server, url)
        db.execute("INSERT INTO cache VALUES ('two', 'model', '2', 0, NULL)")
    assert sorted(store.read("SELECT key FROM cache")) == [("one",), ("two",)]


def test_an_idempotent_write_is_sent_with_its_commit_and_again_when_the_connection_is_lost(
    postgres_server: Any, url: str
) -> None:
    """Checkpoints and the batch writer declare their writes idempotent: one round trip with
    the COMMIT, sent whole again on a new connection when the first was lost."""
    store = Store(url)
    with store.write(idempotent=True) as db:
        db.executemany(
            "INSERT INTO cache VALUES (?, 'model', '1', 0, NULL) ON CONFLICT DO NOTHING",
            [("a",), ("b",)],
        )
        _kill_connections(postgres_server, url)
    with store.write(idempotent=True) as db:
        db.executemany(
            "INSERT INTO cache VALUES (?, 'model', '1', 0, NULL) ON CONFLICT DO NOTHING",
            [("b",), ("c",)],
        )
    assert sorted(store.read("SELECT key FROM cache")) == [("a",), ("b",), ("c",)]


def test_a_write_whose_reads_changed_meanwhile_is_not_replayed_and_nothing_lands(
    postgres_server: Any, url: str
) -> None:
    store, other = Store(url), Store(url)
    with pytest.raises(StoreUnavailableError, match="nothing of it landed"), store.write() as db:
        assert db.execute("SELECT count(*) FROM cache").fetchone() == (0,)
        _kill_connections(postgres_server, url)
        with other.write() as theirs:  # another writer, while this one has no connection
            theirs.execute("INSERT INTO cache VALUES ('theirs', 'model', '1', 0, NULL)")
        db.execute("INSERT INTO cache VALUES ('mine', 'model', '2', 0, NULL)")
    assert store.read("SELECT key FROM cache") == [("theirs",)]


def test_a_connection_lost_before_a_read_is_retried_on_another(
    postgres_server: Any, url: str
) -> None:
    store = Store(url)
    assert store.read("SELECT count(*) FROM runs") == [(0,)]
    _kill_connections(postgres_server, url)
    assert store.read("SELECT count(*) FROM runs") == [(0,)]


def test_a_run_goes_on_when_the_database_restarts_under_it(postgres_server: Any, url: str) -> None:
    """The server restarts between two nodes: every pooled connection is gone; the next
    checkpoint is written on a new one and the run completes with every checkpoint."""

    def first(x: int) -> int:
        return x + 1

    def restart(value: int) -> int:
        postgres_server.restart()
        return value * 10

    def last(value: int) -> int:
        return value - 3

    builder = WorkflowBuilder("restarted")
    for name, fn in (("first", first), ("restart", restart), ("last", last)):
        builder.add_node("FunctionNode", name, {"function": fn})
    builder.add_connection("first", "result", "restart", "value")
    builder.add_connection("restart", "result", "last", "value")
    runtime = LocalRuntime(checkpoint=url)
    results, run_id = runtime.execute(builder.build(), {"first": {"x": 1}})
    assert results["last"] == {"result": 17}
    stored = Store(url).read("SELECT node_id FROM checkpoints WHERE run_id = ?", (run_id,))
    assert sorted(stored) == [("first",), ("last",), ("restart",)]


# -- credentials -----------------------------------------------------------------------------------


def test_the_password_reaches_no_message_record_or_command_output(
    postgres_server: Any, url: str, tmp_path: Path
) -> None:
    def boom(x: int) -> int:
        raise ValueError("no")

    builder = WorkflowBuilder("secretive")
    builder.add_node("FunctionNode", "boom", {"function": boom})
    runtime = LocalRuntime(checkpoint=url, failure_policy="continue")
    _, record = runtime.execute_with_record(builder.build(), {"boom": {"x": 1}})
    store = Store.open(url)
    _password_free(repr(store) + store.path + repr(runtime.store), postgres_server)
    stored = store.read("SELECT record FROM runs WHERE run_id = ?", (record.run_id,))[0][0]
    _password_free(stored + json.dumps(record.to_dict(), default=str), postgres_server)
    from kaizen.cli import app

    runner = CliRunner()
    for command in (["runs", "list", "--store", url],
                    ["runs", "show", record.run_id, "--store", url],
                    ["runs", "show", "missing", "--store", url]):  # fmt: skip
        _password_free(runner.invoke(app, command).output, postgres_server)
    import httpx

    from kaizen.serve.server import BackgroundServer
    from kaizen.serve.ui.app import create_browser_app

    with BackgroundServer(create_browser_app(Store(url))) as server:
        for page in ("/ui", f"/ui/runs/{record.run_id}", f"/ui/runs/{record.run_id}?node=boom",
                     "/ui/runs/missing"):  # fmt: skip
            _password_free(httpx.get(server.url + page, timeout=30).text, postgres_server)


def test_kaizen_ui_takes_a_url_and_says_why_it_cannot_open_it(postgres_server: Any) -> None:
    from kaizen.cli import app

    wrong = postgres_server.database_url("postgres", password="not-the-password")
    result = CliRunner().invoke(app, ["ui", "--store", wrong])
    assert result.exit_code == 2 and "password authentication failed" in result.output
    assert "not-the-password" not in result.output and "no store at" not in result.output


def test_redaction_and_placeholders() -> None:
    assert redact_url("postgresql://u:s3cret@h:5/db") == "postgresql://u:***@h:5/db"
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert to_pyformat("SELECT '?', x FROM t WHERE a = ? AND b LIKE 'x%' AND c % 2 = ?") == (
        "SELECT '?', x FROM t WHERE a = %s AND b LIKE 'x%' AND c %% 2 = %s"
    )
    assert to_pyformat("SELECT 'it''s ?' WHERE a = ?") == "SELECT 'it''s ?' WHERE a = %s"


def test_a_postgres_url_opens_the_postgres_backend_and_a_path_the_sqlite_one(
    url: str, tmp_path: Path
) -> None:
    assert isinstance(Store.open(url), PostgresStore) and Store.open(url) is Store.open(url)
    assert Store.open(tmp_path / "k.db").dialect == "sqlite"


def test_a_postgres_url_made_a_path_is_refused_rather_than_made_a_folder(tmp_path: Path) -> None:
    """`Path("postgresql://...")` folds the "//": it must not become an SQLite file in a
    folder named after the server (with the password in the folder's name)."""
    folded = Path("postgresql://kaizen:s3cret@127.0.0.1:5432/runs")
    with pytest.raises(ConfigError, match="folded") as refused:
        Store.open(folded)
    assert "s3cret" not in str(refused.value)
    assert not Path("postgresql:").exists()
