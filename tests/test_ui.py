"""The run browser over HTTP (`kaizen.serve.ui`): real uvicorn servers on loopback, a real SQLite
store, runs of real workflows (models are ScriptedModels), httpx as the client. What a person
sees in a real Chromium is `tests/test_ui_browser.py`; here: every page's content, paging and
filters at scale, the store reads, errors that are pages, escaping, keys, read-only mode, and
the retry and replay endpoints the pages call."""

from __future__ import annotations

import html
import json
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
import httpx

import kaizen
from kaizen import WorkflowBuilder
from kaizen.render.graph import build_dot, workflow_to_dot
from kaizen.runtime.local import LocalRuntime
from kaizen.serve.app import create_app
from kaizen.serve.server import BackgroundServer
from kaizen.serve.ui.app import create_browser_app
from kaizen.store.browse import BROWSER_STATUSES, run_details, runs_page
from kaizen.store.db import Store
from kaizen.testing import ScriptedModel
from kaizen.workflow.shape import WorkflowShape, shape_of
from tests.test_interrupts_serve import _until as until

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


# -- what runs -------------------------------------------------------------------------------------


def qa_workflow(
    answer: str = "Paris", name: str = "qa_flow", model: ScriptedModel | None = None
) -> Any:
    model = model or ScriptedModel(lambda messages: {"answer": answer, "confidence": 0.9})
    agent = kaizen.create_agent(
        "qa", signature="question -> answer, confidence: float", config={"model": model}
    )
    builder = WorkflowBuilder(name)
    builder.add_agent(agent, "qa")
    builder.add_node("FunctionNode", "shout", {"function": shout})
    builder.add_connection("qa", "answer", "shout", "answer")
    return builder.build()


def shout(answer: str) -> str:
    return answer.upper()


def text_of(page: str) -> str:
    """What a reader sees: tags gone, entities decoded, spaces collapsed."""
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def stored_as_completed(client: httpx.Client) -> httpx.Response:
    """The runs list once it shows the run completed: the list reads the store, where a served
    run's last row lands with the writer's next group commit, a moment after the API (the
    run's memory) says completed."""
    deadline = time.monotonic() + 30
    while "✓ completed" not in text_of((listing := client.get("/ui")).text):
        assert time.monotonic() < deadline, "the runs list never showed the run completed"
        time.sleep(0.02)
    return listing


@pytest.fixture
def served(store_location: str) -> Iterator[tuple[httpx.Client, str]]:
    """A server with the run browser, on each backend's store."""
    store = store_location
    app = create_app(qa_workflow(XSS), store=store, keys=[], record=True)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield client, store


# -- pages -----------------------------------------------------------------------------------------


def test_list_run_and_node_pages_show_the_run(served: tuple[httpx.Client, str]) -> None:
    client, _ = served
    run_id = client.post("/runs", json={"question": "capital of France?"}).json()["run_id"]
    until(client, run_id, {"completed"})

    listing = stored_as_completed(client)
    assert listing.status_code == 200
    row = text_of(listing.text)
    assert run_id[:12] in row and "✓ completed" in row and "qa_flow" in row and "served" in row

    page = client.get(f"/ui/runs/{run_id}")
    assert page.status_code == 200 and page.headers["content-security-policy"]
    drawn = html.unescape(page.text)  # (Graphviz writes the ids' "-" as an entity)
    assert 'id="node-qa"' in drawn and 'id="node-shout"' in drawn  # the drawn graph
    state = json.loads(re.search(r'id="run-state">(.*?)</script>', page.text).group(1))  # type: ignore[union-attr]
    assert state["statuses"] == {"qa": "completed", "shout": "completed"}
    seen = text_of(page.text)
    assert "Critical path qa → shout" in seen and "Model calls 1" in seen
    assert "Timeline" in seen

    panel = text_of(client.get(f"/ui/runs/{run_id}?node=qa").text)
    assert "question : str from parameter capital of France?" in panel
    assert "confidence : float 0.9" in panel
    assert "user question: capital of France?" in panel  # the recorded prompt
    assert "reply {" in panel  # and the reply
    assert re.search(r"kaizen-scripted/\S+ · [0-9.]+ .?s \(.+ queued\) · \d+ tokens · \$0", panel)
    shouted = text_of(client.get(f"/ui/runs/{run_id}?node=shout").text)
    assert "answer : str from qa.answer" in shouted and XSS.upper() in shouted


def test_no_model_reply_input_or_output_reaches_a_page_unescaped(
    served: tuple[httpx.Client, str],
) -> None:
    client, _ = served
    run_id = client.post("/runs", json={"question": XSS}).json()["run_id"]
    until(client, run_id, {"completed"})
    pages = ("/ui", f"/ui/runs/{run_id}", f"/ui/runs/{run_id}?node=qa",
             f"/ui/runs/{run_id}?node=shout", f"/ui/compare?a={run_id}&b={run_id}")  # fmt: skip
    for path in pages:
        page = client.get(path).text
        assert "<script>alert" not in page and "<img src=x" not in page, path
        assert "<SCRIPT>" not in page, path
    assert XSS in text_of(client.get(f"/ui/runs/{run_id}?node=qa").text)  # shown, as text


def test_missing_runs_nodes_and_statuses_are_pages_that_say_so(
    served: tuple[httpx.Client, str],
) -> None:
    client, store = served
    missing = client.get("/ui/runs/no-such-run")
    assert missing.status_code == 404 and "has no run 'no-such-run'" in text_of(missing.text)
    assert "Traceback" not in missing.text
    run_id = client.post("/runs", json={"question": "q"}).json()["run_id"]
    until(client, run_id, {"completed"})
    node = client.get(f"/ui/runs/{run_id}?node=ghost")
    assert node.status_code == 404 and "has no node 'ghost'" in text_of(node.text)
    status = client.get("/ui?status=bogus")
    assert status.status_code == 400 and "one of running, waiting" in text_of(status.text)

    from kaizen.store.runs import prune

    stored_as_completed(client)  # (its served row too, or prune would keep that)
    time.sleep(0.01)
    assert prune(Store.open(store), 0.0) >= 1  # the run was pruned
    pruned = client.get(f"/ui/runs/{run_id}")
    assert pruned.status_code == 404 and "pruned" in text_of(pruned.text)


def test_a_locked_or_damaged_store_is_a_page_not_a_stack_trace(tmp_path: Path) -> None:
    from kaizen.errors import StoreLockedError

    path = tmp_path / "runs.db"
    made = f"from kaizen.store.db import Store; Store({str(path)!r})"
    subprocess.run([sys.executable, "-c", made], check=True)  # a store no one here has open
    # another process holds the file exclusively: the browser says so when it opens it (a
    # store in WAL mode is never locked for readers once they have it open)
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("PRAGMA locking_mode=EXCLUSIVE")
    locker.execute("BEGIN EXCLUSIVE")
    locker.execute("UPDATE runs SET status = status")
    try:
        with pytest.raises(StoreLockedError, match="locked by another process"):
            create_browser_app(Store(path, busy_timeout=0.1))
    finally:
        locker.execute("ROLLBACK")
        locker.close()

    damaged = tmp_path / "damaged.db"
    runtime = LocalRuntime(checkpoint=damaged)
    runtime.execute(qa_workflow(), {"qa": {"question": "q"}})
    runtime.close()
    with BackgroundServer(create_browser_app(damaged)) as server:
        data = bytearray(damaged.read_bytes())
        data[100:4096] = b"\xff" * (4096 - 100)  # the schema page, overwritten
        damaged.write_bytes(bytes(data))
        for wal in tmp_path.glob("damaged.db-*"):
            wal.unlink()
        page = httpx.get(f"{server.url}/ui", timeout=60)
        assert page.status_code == 503 and "Traceback" not in page.text
        assert "cannot be read" in page.text


def test_a_huge_output_is_folded_and_downloadable(store_location: str, tmp_path: Path) -> None:
    def big(n: int) -> str:
        return "x" * n

    builder = WorkflowBuilder("big")
    builder.add_node(big, "big")
    path = store_location
    runtime = LocalRuntime(checkpoint=path)
    _, run_id = runtime.execute(builder.build(), {"big": {"n": 10_000_000}})
    with BackgroundServer(create_browser_app(path)) as server:
        page = httpx.get(f"{server.url}/ui/runs/{run_id}?node=big", timeout=60)
        assert page.status_code == 200 and len(page.text) < 200_000
        seen = text_of(page.text)
        assert "outputs too large to show here (10,000,0" in seen
        whole = httpx.get(f"{server.url}/ui/runs/{run_id}/outputs/big", timeout=60)
        assert whole.status_code == 200 and len(whole.json()["result"]) == 10_000_000


def test_long_values_fold_with_their_size() -> None:
    from kaizen.serve.ui.views import FOLD, shown

    long = shown("y" * (FOLD * 3))
    assert long.folded and long.size == FOLD * 3 and len(long.text) == FOLD
    typed = shown({"__kaizen__": "pydantic", "type": "mod:Answer", "data": {"a": 1}})
    assert typed.type == "Answer" and json.loads(typed.text) == {"a": 1}
    assert shown("key sk-abcdefghijklmnopqrstuvwxyz0123456789").text == "key [redacted]"
    from kaizen.serve.ui.views import interrupt_shown

    asked = {"payload": {"token": "sk-abcdefghijklmnopqrstuvwxyz0123456789"}, "args": None}
    assert interrupt_shown(asked)["payload"] == {"token": "[redacted]"}


def test_compare_names_what_differs(store_location: str, tmp_path: Path) -> None:
    path = store_location
    first = LocalRuntime(checkpoint=path, record=path)
    model = ScriptedModel([{"answer": a, "confidence": 0.9} for a in ("Paris", "Lyon")])
    _, a = first.execute(qa_workflow(model=model), {"qa": {"question": "capital?"}})
    _, b = first.execute(qa_workflow(model=model), {"qa": {"question": "capital?"}})
    with BackgroundServer(create_browser_app(path)) as server:
        page = httpx.get(f"{server.url}/ui/compare", params={"a": a, "b": b}, timeout=30)
        assert page.status_code == 200
        rows = {
            node: text_of(row)
            for node, row in re.findall(r'<tr data-node="([^"]+)"[^>]*>(.*?)</tr>', page.text, re.S)
        }
        differs = rows["qa"].split("✓")[0]
        assert "outputs" in differs and "prompts" not in differs and "models" not in differs
        assert "PARIS" in rows["shout"] and "LYON" in rows["shout"]
        same = httpx.get(f"{server.url}/ui/compare", params={"pick": [a, a]}, timeout=30)
        assert "same" in text_of(same.text) and "differs" not in same.text.split("<tbody>")[1]


# -- the runs list at scale ------------------------------------------------------------------------


def _fill(
    store: Store, runs: list[tuple[str, str, str, float]], served: list[tuple[str, str, str, float]]
) -> None:
    with store.write() as db:
        db.executemany(
            "INSERT INTO runs (run_id, workflow, fingerprint, nodes, parameters, status, started)"
            " VALUES (?, ?, 'f', '{}', '{}', ?, ?)",
            runs,
        )
        db.executemany(
            "INSERT INTO served_runs (run_id, target, status, parameters, created)"
            " VALUES (?, ?, ?, '{}', ?)",
            served,
        )


run_rows = st.lists(
    st.tuples(
        st.sampled_from(["completed", "failed", "running", "waiting", "cancelled", "queued"]),
        st.sampled_from(["alpha", "beta"]),
        st.integers(0, 40),  # few distinct times: ties must page correctly too
        st.booleans(),  # served
        st.booleans(),  # began (has a row in runs)
    ),
    max_size=40,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=run_rows, page=st.integers(1, 7), status=st.sampled_from([None, *BROWSER_STATUSES]),
       workflow=st.sampled_from([None, "alpha"]))  # fmt: skip
def test_paging_through_the_runs_lists_every_run_once_newest_first(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[tuple[str, str, int, bool, bool]],
    page: int,
    status: str | None,
    workflow: str | None,
) -> None:
    store = Store(tmp_path_factory.mktemp("paging") / "runs.db")
    runs, served, expected = [], [], []
    for i, (state, name, moment, is_served, began) in enumerate(rows):
        run_id = f"r{i:03d}"
        if not is_served or began:
            # (a served run that began has the runtime's status in runs: the same, but a
            # served "queued" is "running" there)
            runs.append((run_id, name, "running" if state == "queued" else state, float(moment)))
        if is_served:
            served.append((run_id, name, state, float(moment)))
        if (status is None or state in BROWSER_STATUSES[status]) and workflow in (None, name):
            expected.append((float(moment), run_id))
    _fill(store, runs, served)
    seen: list[tuple[float, str]] = []
    cursor = None
    for _ in range(100):
        found, cursor = runs_page(store, status=status, workflow=workflow, before=cursor,
                                  limit=page)  # fmt: skip
        assert len(found) <= page
        seen += [(r.started, r.run_id) for r in found]
        if cursor is None:
            break
    # (a served run's own status wins over its runs row: "running" there, the served one here)
    want = sorted(expected, reverse=True)
    assert seen == want


def test_the_runs_list_reads_a_page_not_the_store(store_location: str, tmp_path: Path) -> None:
    """At 100,000 runs a page is an index walk: the query plan names the index, and the
    records opened are the page's (no unit test times anything; benchmarks/bench_ui.py does)."""
    store = Store(store_location)
    rows = [
        (f"r{i:06d}", "alpha" if i % 2 else "beta", "completed" if i % 3 else "failed", float(i))
        for i in range(100_000)
    ]
    _fill(store, rows, [])
    with store.write() as db:
        db.execute("UPDATE runs SET record = '{\"usage\": {\"prompt_tokens\": 3, "
                   "\"completion_tokens\": 4, \"cost\": 0.5}}'")  # fmt: skip
    explain = "EXPLAIN QUERY PLAN" if store.dialect == "sqlite" else "EXPLAIN"
    if store.dialect == "postgres":
        store.read("ANALYZE runs")  # (what autovacuum does soon after a bulk load)
    for where in ("", "WHERE status IN ('failed')", "WHERE workflow = 'alpha'"):
        plan = " ".join(
            str(row[-1])
            for row in store.read(
                f"{explain} SELECT run_id FROM runs {where}"
                " ORDER BY started DESC, run_id DESC LIMIT 51"
            )
        )
        assert re.search(r"USING (COVERING )?INDEX runs_|Index Scan.* using runs_", plan), plan
    rows, cursor = runs_page(store, status="failed", limit=50)
    assert [r.run_id for r in rows][:2] == ["r099999", "r099996"] and cursor is not None
    assert rows[0].tokens == 7 and rows[0].cost == 0.5
    older, _ = runs_page(store, status="failed", before=cursor, limit=50)
    assert older[0].started < rows[-1].started
    found, _ = runs_page(store, search="r09999")
    assert {r.run_id for r in found} == {f"r09999{i}" for i in range(10)}


# -- the store's shapes ----------------------------------------------------------------------------


names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)


@given(ids=st.lists(names, min_size=1, max_size=6, unique=True), bound=st.booleans())
def test_a_stored_shape_draws_as_its_workflow_does(ids: list[str], bound: bool) -> None:
    builder = WorkflowBuilder("drawn")
    for i, node_id in enumerate(ids):
        builder.add_node(
            shout, f"g{i % 2}/{node_id}", {"answer": "<b>"} if bound and i == 0 else {}
        )
        if i:
            builder.add_connection(f"g{(i - 1) % 2}/{ids[i - 1]}", "result",
                                   f"g{i % 2}/{node_id}", "answer")  # fmt: skip
    workflow = builder.build()
    again = WorkflowShape.from_json(json.loads(json.dumps(shape_of(workflow).to_json())))
    assert again == shape_of(workflow)
    assert str(build_dot(again).source) == workflow_to_dot(workflow)


def test_a_run_is_drawn_by_a_process_that_has_not_got_the_workflow(
    store_location: str, tmp_path: Path
) -> None:
    path = store_location
    runtime = LocalRuntime(checkpoint=path)
    workflow = qa_workflow()
    _, run_id = runtime.execute(workflow, {"qa": {"question": "q"}})
    details = run_details(Store.open(path), run_id)
    assert details is not None and details.shape == shape_of(workflow)
    count = Store.open(path).read("SELECT count(*) FROM workflows")[0][0]
    runtime.execute(workflow, {"qa": {"question": "again"}})
    assert Store.open(path).read("SELECT count(*) FROM workflows")[0][0] == count == 1


# -- keys, read-only, actions ----------------------------------------------------------------------


def test_with_keys_pages_ask_for_one_and_actions_need_it(tmp_path: Path) -> None:
    app = create_app(qa_workflow(), store=tmp_path / "runs.db", keys=["s3cret"])
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        asked = client.get("/ui/runs/x?node=y")
        assert asked.status_code == 303
        assert asked.headers["location"] == "/ui/login?next=%2Fui%2Fruns%2Fx%3Fnode%3Dy"
        assert client.get("/ui/login").status_code == 200
        assert client.get("/ui/static/ui.css").status_code == 200
        refused = client.post("/runs", json={"question": "q"})
        assert refused.status_code == 401 and "API key" in refused.json()["detail"]
        wrong = client.post("/ui/login", data={"key": "nope", "next": "/ui"})
        assert wrong.status_code == 401 and "Traceback" not in wrong.text
        right = client.post("/ui/login", data={"key": "s3cret", "next": "//evil.example/"})
        assert right.status_code == 303 and right.headers["location"] == "/ui"  # no open redirect
        cookie = right.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert client.get("/ui").status_code == 200  # the cookie is the key now
        assert client.post("/runs", json={"question": "q"}).status_code == 202
        assert "s3cret" not in client.get("/ui").text


def test_read_only_servers_refuse_every_action(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    app = create_app(qa_workflow(), store=path, keys=[], actions=False)
    with BackgroundServer(app) as server:
        refused = httpx.post(f"{server.url}/runs", json={"question": "q"}, timeout=30)
        assert refused.status_code == 403 and "--allow-actions" in refused.json()["detail"]
        page = httpx.get(f"{server.url}/ui/new", timeout=30)
        assert page.status_code == 404 and "read-only" in text_of(page.text)
    with BackgroundServer(create_browser_app(path)) as server:
        assert httpx.post(f"{server.url}/runs/x/cancel", timeout=30).status_code == 403
    with BackgroundServer(create_browser_app(path, allow_actions=True)) as server:
        assert httpx.post(f"{server.url}/runs/x/cancel", timeout=30).status_code == 404


def test_new_run_form_comes_from_the_input_schema(served: tuple[httpx.Client, str]) -> None:
    client, _ = served
    page = client.get("/ui/new")
    assert page.status_code == 200
    assert 'name="question"' in page.text and 'data-kind="string"' in page.text


_attempts: dict[str, int] = {}


def flaky_once(x: int) -> int:
    _attempts["flaky"] = _attempts.get("flaky", 0) + 1
    if _attempts["flaky"] == 1:
        raise RuntimeError("the first attempt fails")
    return x + 1


def counted(x: int) -> int:
    _attempts["first"] = _attempts.get("first", 0) + 1
    return x * 10


def test_retry_resumes_a_failed_run_from_its_checkpoints(
    store_location: str, tmp_path: Path
) -> None:
    _attempts.clear()
    builder = WorkflowBuilder("flaky")
    builder.add_node(counted, "first")
    builder.add_node(flaky_once, "second")
    builder.add_connection("first", "result", "second", "x")
    app = create_app(builder.build(), store=store_location, keys=[])
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        run_id = client.post("/runs", json={"x": 2}).json()["run_id"]
        until(client, run_id, {"failed"})
        retried = client.post(f"/runs/{run_id}/retry")
        assert retried.status_code == 202 and retried.json()["run_id"] == run_id
        done = until(client, run_id, {"completed", "failed"})
        assert done["status"] == "completed" and done["results"]["second"] == {"result": 21}
        assert _attempts == {"first": 1, "flaky": 2}  # the first node was not run again
        again = client.post(f"/runs/{run_id}/retry")
        assert again.status_code == 409 and "only a failed or cancelled run" in again.text
        assert client.post("/runs/nope/retry").status_code == 404


def test_replay_serves_every_call_from_the_recording(store_location: str, tmp_path: Path) -> None:
    path = store_location
    model = ScriptedModel([{"answer": "Paris", "confidence": 0.9}])  # one reply only
    agent = kaizen.create_agent("qa", signature="question -> answer, confidence: float",
                                config={"model": model})  # fmt: skip
    app = create_app(agent, store=path, keys=[], record=True)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        run_id = client.post("/runs", json={"question": "capital?"}).json()["run_id"]
        first = until(client, run_id, {"completed"})
        replay = client.post(f"/runs/{run_id}/replay")
        assert replay.status_code == 202 and replay.json()["run_id"] != run_id
        again = until(client, replay.json()["run_id"], {"completed", "failed"})
        assert again["status"] == "completed" and again["results"] == first["results"]
        assert len(model.calls) == 1  # the replay asked no model
    unrecorded = create_app(qa_workflow(), store=tmp_path / "plain.db", keys=[])
    with BackgroundServer(unrecorded) as server, httpx.Client(base_url=server.url) as client:
        run_id = client.post("/runs", json={"question": "q"}).json()["run_id"]
        until(client, run_id, {"completed"})
        refused = client.post(f"/runs/{run_id}/replay")
        assert refused.status_code == 404 and "not recorded" in refused.json()["detail"]


def test_memory_read_and_written_are_noted_for_the_panel(
    store_location: str, tmp_path: Path
) -> None:
    path = store_location
    agent = kaizen.create_agent(
        "rememberer", signature="question -> answer",
        config={"model": ScriptedModel(lambda m: {"answer": "noted"})},
    )  # fmt: skip
    agent.enable_memory(provider="memory")
    builder = WorkflowBuilder("remember")
    builder.add_agent(agent, "ask")
    runtime = LocalRuntime(checkpoint=path)
    runtime.execute(builder.build(), {"ask": {"question": "first"}})
    _, run_id = runtime.execute(builder.build(), {"ask": {"question": "second"}})
    notes = runtime.get_record(run_id).nodes["ask"].notes
    kinds = [n["kind"] for n in notes]
    assert kinds == ["memory_read", "memory_written"]
    assert "first" in notes[0]["block"] and notes[1]["fields"] == ["answer"]


def test_the_ui_command_explains_a_missing_store(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from kaizen.cli import app

    result = CliRunner().invoke(app, ["ui", "--store", str(tmp_path / "none.db")])
    assert result.exit_code != 0 and "no store at" in result.output
