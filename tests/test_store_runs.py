"""Checkpoint and resume: the SIGKILL crash test, resume with a changed workflow, the encoder,
a full disk, a locked and a corrupted store file."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaizen import LocalRuntime, WorkflowBuilder
from kaizen.errors import (
    EncodeError,
    RunNotFoundError,
    StoreCorruptedError,
    StoreFullError,
    StoreLockedError,
    WorkflowChangedError,
)
from kaizen.runtime.context import current_node_context
from kaizen.store import Store
from kaizen.store.db import is_store_url
from kaizen.store.encode import decode, encode, encode_outputs
from kaizen.store.runs import load_checkpoints, load_run

ROOT = Path(__file__).resolve().parent.parent

# The crash test's workflow: a -> b -> c -> d, each node counting its runs in a file.
CRASH_FLOW = textwrap.dedent(
    """
    import os, time
    from pathlib import Path
    from kaizen import WorkflowBuilder

    COUNTS = Path(os.environ["COUNTS"])

    def count(name):
        with open(COUNTS / name, "a") as f:
            f.write("x")

    def a(x: int) -> int:
        count("a"); return x + 1

    def b(value: int) -> int:
        count("b"); return value * 10

    def c(value: int) -> dict:
        count("c")
        if os.environ.get("CRASH") and not (COUNTS / "crashed").exists():
            (COUNTS / "crashed").write_text("")
            time.sleep(60)  # killed here
        return {"total": value + 5, "tags": ("x", "y")}

    def d(value: dict) -> str:
        count("d"); return f"{value['total']}:{'-'.join(value['tags'])}"

    def build():
        wf = WorkflowBuilder("crashy")
        wf.add_node("FunctionNode", "a", {"function": a})
        wf.add_node("FunctionNode", "b", {"function": b})
        wf.add_node("FunctionNode", "c", {"function": c})
        wf.add_node("FunctionNode", "d", {"function": d})
        wf.add_connection("a", "result", "b", "value")
        wf.add_connection("b", "result", "c", "value")
        wf.add_connection("c", "result", "d", "value")
        return wf.build()
    """
)

CRASH_MAIN = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from kaizen import LocalRuntime
    from crashflow import build
    mode, store, run_id = sys.argv[2], sys.argv[3], sys.argv[4]
    runtime = LocalRuntime(checkpoint=store)
    if mode == "run":
        results, _ = runtime.execute(build(), {"a": {"x": 1}}, run_id=run_id)
    else:
        results, _ = runtime.resume(run_id, build())
    print(json.dumps(results, default=list))
    """
)


def _python(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(tmp_path / "main.py"), str(tmp_path), *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_a_run_killed_mid_way_resumes_in_a_new_process_without_rerunning_finished_nodes(
    store_location: str,
    tmp_path: Path,
) -> None:
    (tmp_path / "crashflow.py").write_text(CRASH_FLOW)
    (tmp_path / "main.py").write_text(CRASH_MAIN)
    crashed, clean = tmp_path / "crashed-counts", tmp_path / "clean-counts"
    crashed.mkdir()
    clean.mkdir()
    store = store_location

    victim = _python(tmp_path, "run", store, "run-1", env={"COUNTS": str(crashed), "CRASH": "1"})
    deadline = time.monotonic() + 60
    # killed once c is running and the checkpoints of a and b are committed (they are, a few
    # milliseconds after each node ends: the window itself is the next test's subject)
    while not (crashed / "crashed").exists() or _checkpointed(store, "run-1") != {"a", "b"}:
        assert victim.poll() is None, victim.communicate()
        assert time.monotonic() < deadline, "node c never started"
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL

    resumed = _python(tmp_path, "resume", store, "run-1", env={"COUNTS": str(crashed)})
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    uninterrupted = _python(
        tmp_path, "run", str(tmp_path / "other.db"), "run-2", env={"COUNTS": str(clean)}
    )
    clean_out, err = uninterrupted.communicate(timeout=120)
    assert uninterrupted.returncode == 0, err

    assert json.loads(out) == json.loads(clean_out)
    runs = {name: len((crashed / name).read_text()) for name in "abcd"}
    assert runs == {"a": 1, "b": 1, "c": 2, "d": 1}  # c was running when killed: at least once


def _checkpointed(store: str, run_id: str) -> set[str]:
    """The nodes of `run_id` whose checkpoints are committed, read as another process would."""
    if is_store_url(store):
        rows = Store.open(store).read("SELECT node_id FROM checkpoints WHERE run_id = ?", (run_id,))
        return {row[0] for row in rows}
    if not Path(store).exists():
        return set()
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        try:
            rows = db.execute("SELECT node_id FROM checkpoints WHERE run_id = ?", (run_id,))
            return {row[0] for row in rows}
        except sqlite3.OperationalError:  # not created yet
            return set()


# A 200-node chain, each node logging its runs to one file, for the durability-window test.
LONG_FLOW = textwrap.dedent(
    """
    import os, time
    from kaizen import WorkflowBuilder

    def step(value: int) -> int:
        with open(os.environ["LOG"], "a") as log:
            log.write(f"{value}\\n")
        time.sleep(0.002)
        return value + 1

    def build():
        wf = WorkflowBuilder("long")
        for i in range(200):
            wf.add_node("FunctionNode", f"n{i}", {"function": step})
            if i:
                wf.add_connection(f"n{i - 1}", "result", f"n{i}", "value")
        return wf.build()
    """
)

LONG_MAIN = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from kaizen import LocalRuntime
    from longflow import build
    mode, store, run_id = sys.argv[2], sys.argv[3], sys.argv[4]
    runtime = LocalRuntime(checkpoint=store)
    if mode == "run":
        results, _ = runtime.execute(build(), {"n0": {"value": 0}}, run_id=run_id)
    else:
        results, _ = runtime.resume(run_id, build())
    print(json.dumps(results))
    """
)


@pytest.mark.slow
def test_a_run_killed_at_any_moment_loses_at_most_its_last_uncommitted_nodes(
    store_location: str,
    tmp_path: Path,
) -> None:
    """Checkpoints are committed in batches a few milliseconds behind the nodes. Killed
    mid-stream, a run keeps a gapless prefix of its nodes; on resume exactly the nodes past
    that prefix run (again, for those that had finished in the window), each output is stored
    once, and the results equal an uninterrupted run's."""
    (tmp_path / "longflow.py").write_text(LONG_FLOW)
    (tmp_path / "main.py").write_text(LONG_MAIN)
    log, store = tmp_path / "log", store_location
    victim = subprocess.Popen(
        [sys.executable, str(tmp_path / "main.py"), str(tmp_path), "run", store, "run-1"],
        env={**os.environ, "LOG": str(log)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not log.exists() or len(log.read_text().split()) < 60:
        assert victim.poll() is None, victim.communicate()
        assert time.monotonic() < deadline, "the chain never got going"
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    ran_before = [int(v) for v in log.read_text().split()]
    kept = _checkpointed(store, "run-1")
    assert kept == {f"n{i}" for i in range(len(kept))}  # a prefix of the chain, no holes
    assert ran_before == list(range(len(ran_before)))  # (node n{i} logs i)
    assert len(kept) <= len(ran_before) < 200

    resumed = subprocess.run(
        [sys.executable, str(tmp_path / "main.py"), str(tmp_path), "resume", store, "run-1"],
        env={**os.environ, "LOG": str(log)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    runs = [int(v) for v in log.read_text().split()]
    assert runs == ran_before + list(range(len(kept), 200))  # only what was not kept runs
    assert json.loads(resumed.stdout) == {f"n{i}": {"result": i + 1} for i in range(200)}
    rows = Store(store).read("SELECT node_id, outputs FROM checkpoints WHERE run_id = 'run-1'")
    stored = {node: json.loads(outputs) for node, outputs in rows}
    assert stored == {f"n{i}": {"result": i + 1} for i in range(200)}


def chain(calls: list[str], c_fails: bool = False) -> Any:
    def first(x: int) -> int:
        calls.append("first")
        return x + 1

    def second(value: int) -> int:
        calls.append("second")
        if c_fails:
            raise RuntimeError("flaky")
        return value * 2

    wf = WorkflowBuilder("chain")
    wf.add_node("FunctionNode", "first", {"function": first})
    wf.add_node("FunctionNode", "second", {"function": second})
    wf.add_connection("first", "result", "second", "value")
    return wf.build()


def test_a_failed_run_resumes_and_runs_only_what_did_not_finish(
    store_location: str, tmp_path: Path
) -> None:
    calls: list[str] = []
    runtime = LocalRuntime(checkpoint=store_location)
    with pytest.raises(Exception, match="flaky") as failure:
        runtime.execute(chain(calls, c_fails=True), {"first": {"x": 1}})
    run_id = failure.value.run_id  # type: ignore[attr-defined]
    assert load_checkpoints(runtime.store, run_id) == {"first": {"result": 2}}

    results, same = runtime.resume(run_id, chain(calls))
    assert same == run_id
    assert results == {"first": {"result": 2}, "second": {"result": 4}}
    assert calls == ["first", "second", "second"]
    record = runtime.last_record
    assert record is not None and record.nodes["first"].restored
    assert load_run(runtime.store, run_id).status == "completed"


def test_resume_with_a_changed_workflow_is_refused_and_keeps_the_checkpoints(
    store_location: str,
    tmp_path: Path,
) -> None:
    calls: list[str] = []
    runtime = LocalRuntime(checkpoint=store_location)
    with pytest.raises(Exception, match="flaky") as failure:
        runtime.execute(chain(calls, c_fails=True), {"first": {"x": 1}})
    run_id = failure.value.run_id  # type: ignore[attr-defined]

    def other(value: int) -> int:
        return value

    wf = WorkflowBuilder("chain")
    wf.add_node("FunctionNode", "first", {"function": other})
    changed = wf.build()
    with pytest.raises(WorkflowChangedError) as refused:
        runtime.resume(run_id, changed)
    assert "node 'first' changed" in str(refused.value)
    assert "node 'second' was removed" in refused.value.differences
    assert load_checkpoints(runtime.store, run_id) == {"first": {"result": 2}}
    with pytest.raises(RunNotFoundError):
        runtime.resume("no-such-run", changed)


@pytest.mark.parametrize("size", [3, 250])  # small records and big ones take two paths
def test_the_stored_run_record_is_the_records_own_dict(
    store_location: str, tmp_path: Path, size: int
) -> None:
    def step(value: int) -> int:
        return value + 1

    wf = WorkflowBuilder("w")
    for i in range(size):
        wf.add_node("FunctionNode", f"n{i}", {"function": step})
        if i:
            wf.add_connection(f"n{i - 1}", "result", f"n{i}", "value")
    runtime = LocalRuntime(checkpoint=store_location)
    _, run_id = runtime.execute(wf.build(), {"n0": {"value": 0}})
    record = runtime.get_record(run_id)
    stored = load_run(runtime.store, run_id)
    assert stored.record == json.loads(json.dumps(record.to_dict(), default=str))
    assert stored.status == "completed" and stored.completed_nodes == size


def test_the_node_context_carries_an_idempotency_key(store_location: str, tmp_path: Path) -> None:
    keys: list[str] = []

    def side_effect(x: int) -> int:
        context = current_node_context()
        assert context is not None
        keys.append(context.idempotency_key)
        return x

    wf = WorkflowBuilder("w")
    wf.add_node("FunctionNode", "pay", {"function": side_effect})
    _, run_id = LocalRuntime(checkpoint=store_location).execute(wf.build(), {"pay": {"x": 1}})
    assert keys == [f"{run_id}:pay:1"]


# -- the encoder ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Point:
    x: int
    label: str


class Colour(str, __import__("enum").Enum):
    RED = "red"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4)
        | st.tuples(inner, inner)
        | st.frozensets(st.integers(), max_size=3)
        | st.builds(Point, st.integers(), st.text(max_size=5))
        | st.dictionaries(st.integers(), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_stored_values_come_back_as_they_were(value: Any) -> None:
    assert decode(json.loads(json.dumps(encode(value)))) == value


def test_pydantic_models_dates_bytes_and_enums_round_trip() -> None:
    from pydantic import BaseModel

    class_ = _Answer(text="a", score=0.5)
    value = {
        "model": class_,
        "when": datetime.datetime(2026, 1, 2, 3, 4, 5),
        "raw": b"\x00\xff",
        "colour": Colour.RED,
        "__kaizen__": "not a tag",
    }
    assert isinstance(class_, BaseModel)
    assert decode(json.loads(json.dumps(encode(value)))) == value


def test_a_value_that_cannot_be_stored_names_its_node_and_port() -> None:
    with pytest.raises(EncodeError) as error:
        encode_outputs({"ok": 1, "handle": threading.Lock()}, node_id="open_file")
    assert error.value.node_id == "open_file" and error.value.port == "handle"
    assert "allow_pickle" in str(error.value)
    encoding, _ = encode_outputs({"f": Point}, node_id="n", allow_pickle=True)
    assert encoding == "pickle"


# -- store failures ------------------------------------------------------------------------------


def test_a_full_disk_fails_the_run_clearly_and_keeps_what_was_stored(tmp_path: Path) -> None:
    def small(x: int) -> str:
        return "s"

    def huge(value: str) -> str:
        return "x" * 2_000_000

    wf = WorkflowBuilder("w")
    wf.add_node("FunctionNode", "small", {"function": small})
    wf.add_node("FunctionNode", "huge", {"function": huge})
    wf.add_connection("small", "result", "huge", "value")
    # a store that cannot grow past its current size plus a little (on every connection,
    # the store's writer thread's too): the big write fails
    path = tmp_path / "k.db"
    pages, page_size = Store(path).read("SELECT * FROM pragma_page_count, pragma_page_size")[0]
    runtime = LocalRuntime(checkpoint=Store(path, max_size=(pages + 20) * page_size))
    with pytest.raises(StoreFullError) as full:
        runtime.execute(wf.build(), {"small": {"x": 1}})
    assert "no space left" in str(full.value)
    run_id = full.value.run_id  # type: ignore[attr-defined]
    assert full.value.results["huge"] == {"result": "x" * 2_000_000}  # type: ignore[attr-defined]
    assert load_checkpoints(runtime.store, run_id) == {"small": {"result": "s"}}


def test_a_locked_store_is_a_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    store = Store(path, busy_timeout=0.2)
    with store.write() as db:
        db.execute("INSERT INTO cache VALUES ('k', 'model', '1', 0, NULL)")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreLockedError, match="locked"), store.write() as db:
            db.execute("INSERT INTO cache VALUES ('k2', 'model', '2', 0, NULL)")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.read("SELECT key FROM cache") == [("k",)]


def test_a_corrupted_store_file_is_a_clear_error_and_is_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "kaizen.db"
    junk = b"this is not a database" * 100
    path.write_bytes(junk)
    with pytest.raises(StoreCorruptedError, match="not a readable Kaizen store"):
        Store(path)
    assert path.read_bytes() == junk


def test_the_batch_writer_stores_every_good_row_of_a_batch_holding_a_bad_one(
    store_location: str,
    tmp_path: Path,
) -> None:
    from kaizen.errors import StoreError
    from kaizen.store.writer import attach, detach

    class Owner:
        def __init__(self) -> None:
            self.errors: list[Exception] = []

        def write_failed(self, error: Exception) -> None:
            self.errors.append(error)

    store = Store(store_location)
    good, bad = Owner(), Owner()
    writer = attach(store)
    insert = "INSERT INTO cache VALUES (?, 'model', '1', 0, NULL)"
    try:
        for i in range(5):
            writer.submit(insert, (f"k{i}",), good)
        writer.submit(insert, ("k0",), bad)  # the key is taken: this row cannot land
        for i in range(5, 10):
            writer.submit(insert, (f"k{i}",), good)
        writer.flush()
    finally:
        detach(writer)
    assert store.read("SELECT count(*) FROM cache")[0][0] == 10
    assert good.errors == []
    assert len(bad.errors) == 1 and isinstance(bad.errors[0], StoreError)
    assert "unique constraint" in str(bad.errors[0]).lower()


_WRITER = textwrap.dedent(
    """
    import sys
    from kaizen.store import Store
    store = Store(sys.argv[1])
    for i in range(int(sys.argv[3])):
        with store.write() as db:
            db.execute("INSERT INTO cache VALUES (?, 'model', '1', 0, NULL)",
                       (f"{sys.argv[2]}-{i}",))
    """
)


def test_writers_in_several_threads_and_processes_lose_nothing(
    store_location: str, tmp_path: Path
) -> None:
    path = store_location
    store = Store(path)
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    processes = [
        subprocess.Popen([sys.executable, str(script), str(path), f"p{n}", "100"]) for n in range(3)
    ]

    def write(name: str) -> None:
        for i in range(100):
            with store.write() as db:
                db.execute("INSERT INTO cache VALUES (?, 'model', '1', 0, NULL)", (f"{name}-{i}",))

    threads = [threading.Thread(target=write, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for process in processes:
        assert process.wait(timeout=120) == 0
    assert store.read("SELECT count(*) FROM cache")[0][0] == 700


_CHECKPOINTING = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    from kaizen import LocalRuntime
    from longflow import build
    for n in range(2):
        LocalRuntime(checkpoint=sys.argv[2]).execute(
            build(), {"n0": {"value": 0}}, run_id=f"{sys.argv[3]}-{n}"
        )
    """
)


def test_checkpointed_runs_in_several_threads_and_processes_lose_nothing(
    store_location: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "longflow.py").write_text(
        LONG_FLOW.replace("time.sleep(0.002)", "pass").replace("range(200)", "range(50)")
    )
    (tmp_path / "runs.py").write_text(_CHECKPOINTING)
    store = store_location
    env = {**os.environ, "LOG": os.devnull}
    script = [sys.executable, str(tmp_path / "runs.py"), str(tmp_path), store]
    processes = [subprocess.Popen([*script, f"p{n}"], env=env) for n in range(2)]
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("LOG", os.devnull)
    monkeypatch.delitem(sys.modules, "longflow", raising=False)
    from longflow import build  # type: ignore[import-not-found]

    runtime = LocalRuntime(checkpoint=store)
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            for n in range(2):
                runtime.execute(build(), {"n0": {"value": 0}}, run_id=f"{name}-{n}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"t{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for process in processes:
        assert process.wait(timeout=120) == 0
    assert errors == []
    reader = Store(store)  # connections of its own
    per_run = dict(reader.read("SELECT run_id, count(*) FROM checkpoints GROUP BY run_id"))
    statuses = {status for (status,) in reader.read("SELECT status FROM runs")}
    assert per_run == {f"{who}-{n}": 50 for who in ("p0", "p1", "t0", "t1", "t2")
                       for n in range(2)}  # fmt: skip
    assert statuses == {"completed"}
    assert load_checkpoints(runtime.store, "t1-1")["n49"] == {"result": 50}


from pydantic import BaseModel  # noqa: E402


class _Answer(BaseModel):
    text: str
    score: float


def test_the_runs_command_lists_shows_resumes_and_prunes(
    store_location: str, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from kaizen.cli.app import app

    (tmp_path / "clif.py").write_text(
        "from kaizen import WorkflowBuilder\n"
        "def a(x: int) -> int:\n    return x + 1\n"
        "def build():\n"
        "    wf = WorkflowBuilder('cli')\n"
        "    wf.add_node('FunctionNode', 'a', {'function': a})\n"
        "    return wf.build()\n"
    )
    store = store_location
    sys.path.insert(0, str(tmp_path))
    try:
        from clif import build  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))
    LocalRuntime(checkpoint=store).execute(build(), {"a": {"x": 1}}, run_id="r1")
    runner = CliRunner()
    listed = runner.invoke(app, ["runs", "list", "--store", store])
    assert listed.exit_code == 0 and "r1" in listed.output and "completed" in listed.output
    shown = runner.invoke(app, ["runs", "show", "r1", "--store", store])
    assert json.loads(shown.output)["checkpointed_nodes"] == ["a"]
    resumed = runner.invoke(app, ["runs", "resume", "r1", f"{tmp_path}/clif.py:build",
                                  "--store", store])  # fmt: skip
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.output) == {"a": {"result": 2}}
    missing = runner.invoke(app, ["runs", "show", "nope", "--store", store])
    assert missing.exit_code == 2 and "no run 'nope'" in missing.output
    pruned = runner.invoke(app, ["runs", "prune", "--older-than", "0s", "--store", store])
    assert "pruned 1 run(s)" in pruned.output
