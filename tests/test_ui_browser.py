"""The run browser in a real browser: Playwright driving Debian's chromium (installed by the test
command with apt; never a downloaded browser) against real `kaizen serve` apps on loopback.

Clicks through list → run → node panel, watches a live run's nodes turn green in order (the
nodes wait on events the test sets: no sleeps), answers an interrupt and approves a tool call in
the page, starts a run from the form, compares two runs, moves through the graph with the
keyboard, and checks that no script in a reply ever runs. Each page's screenshot goes to
out/ui/ (docs/ui.md shows them).
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("playwright.sync_api")
import httpx
from playwright.sync_api import sync_playwright

import kaizen
from kaizen import WorkflowBuilder
from kaizen.serve.app import create_app
from kaizen.serve.server import BackgroundServer
from kaizen.testing import ScriptedModel
from tests.test_ui import XSS, qa_workflow, until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "out" / "ui"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            "Debian's chromium is not installed: `make setup` installs it (apt-get install "
            "chromium); the browser tests never download one"
        )
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    dialogs: list[str] = []
    errors: list[str] = []
    opened.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    opened.on("pageerror", lambda error: errors.append(str(error)))
    # a Content-Security-Policy violation is a console error ("Refused to ..."); an answer the
    # API refused on purpose ("Failed to load resource: ... 422") is the test's, not the page's
    opened.on(
        "console",
        lambda line: (
            errors.append(line.text)
            if line.type == "error" and not line.text.startswith("Failed to load resource")
            else None
        ),
    )
    opened.dialogs, opened.errors = dialogs, errors
    yield opened
    assert dialogs == [], f"a page ran script from a value: {dialogs}"
    assert errors == [], f"the page's JavaScript failed, or broke its policy: {errors}"
    context.close()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def node(page: Any, node_id: str, status: str) -> Any:
    """The drawn node `node_id` once it shows `status` (waits for it)."""
    return page.wait_for_selector(f'g.node[id="node-{node_id}"][data-status="{status}"]')


# -- list → run → node -----------------------------------------------------------------------------


def test_list_run_node_and_keyboard(tmp_path: Path, page: Any) -> None:
    app = create_app(qa_workflow(XSS), store=tmp_path / "runs.db", keys=[], record=True)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        run_id = client.post("/runs", json={"question": XSS}).json()["run_id"]
        until(client, run_id, {"completed"})

        page.goto(f"{server.url}/ui")
        shot(page, "runs")
        page.click(f'a.run-link[href="/ui/runs/{run_id}"]')
        page.wait_for_url(f"**/ui/runs/{run_id}")
        node(page, "qa", "completed")
        node(page, "shout", "completed")
        assert page.inner_text("#run-status") == "✓ completed"
        shot(page, "run")

        page.click('g.node[id="node-qa"] a')  # a click on the drawn node opens its panel
        page.wait_for_url("**?node=qa")
        panel = page.inner_text("#panel")
        assert "Inputs" in panel and XSS in panel and "capital" not in panel
        assert "reply" in panel and "confidence" in panel
        assert page.evaluate("document.activeElement.id") == "panel-h"  # focus follows
        assert page.evaluate("document.querySelectorAll('img[src=x]').length") == 0
        shot(page, "node")

        # the keyboard moves through the graph's nodes and opens one
        page.goto(f"{server.url}/ui/runs/{run_id}")
        page.focus('g.node[id="node-qa"] a')
        page.keyboard.press("ArrowRight")
        assert page.evaluate("document.activeElement.closest('g.node').id") == "node-shout"
        page.keyboard.press("Enter")
        page.wait_for_url("**?node=shout")
        assert "from qa.answer" in page.inner_text("#panel")


# -- a live run ------------------------------------------------------------------------------------

GATES: dict[str, threading.Event] = {}


def gated(name: str) -> Any:
    def step(x: int) -> int:
        assert GATES[name].wait(WAIT_MS / 1000), f"the test never opened gate {name}"
        return x + 1

    step.__name__ = f"step_{name}"
    return step


def test_a_live_runs_nodes_turn_green_in_order(tmp_path: Path, page: Any) -> None:
    GATES.clear()
    GATES.update({name: threading.Event() for name in "abc"})
    builder = WorkflowBuilder("live")
    for name in "abc":
        builder.add_node(gated(name), name)
    builder.add_connection("a", "result", "b", "x")
    builder.add_connection("b", "result", "c", "x")
    app = create_app(builder.build(), store=tmp_path / "runs.db", keys=[])
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        run_id = client.post("/runs", json={"x": 1}).json()["run_id"]
        page.goto(f"{server.url}/ui/runs/{run_id}")
        node(page, "a", "running")
        assert page.get_attribute('g.node[id="node-c"]', "data-status") == "pending"
        shot(page, "live")
        GATES["a"].set()
        node(page, "a", "completed")
        node(page, "b", "running")
        assert page.get_attribute('g.node[id="node-c"]', "data-status") == "pending"
        GATES["b"].set()
        node(page, "b", "completed")
        node(page, "c", "running")
        GATES["c"].set()
        page.wait_for_selector('#run-status[data-status="completed"]')
        # the page reloads itself when the run ends: the totals and timeline are there
        page.wait_for_selector("#timeline-h")
        for name in "abc":
            node(page, name, "completed")


# -- an interrupt answered in the page -------------------------------------------------------------


def ask(x: int) -> int:
    return x + kaizen.interrupt({"question": "how many more?"}, schema={"type": "integer"})


def double(value: int) -> int:
    return value * 2


def test_an_interrupt_answered_in_the_page_finishes_the_run(tmp_path: Path, page: Any) -> None:
    builder = WorkflowBuilder("pausing")
    builder.add_node("FunctionNode", "ask", {"function": ask})
    builder.add_node("FunctionNode", "double", {"function": double})
    builder.add_connection("ask", "result", "double", "value")
    app = create_app(builder.build(), store=tmp_path / "runs.db", keys=[])
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        run_id = client.post("/runs", json={"x": 1}).json()["run_id"]
        until(client, run_id, {"waiting"})
        page.goto(f"{server.url}/ui/runs/{run_id}")
        node(page, "ask", "waiting")
        assert page.get_attribute('g.node[id="node-double"]', "data-status") == "pending"
        assert "how many more?" in page.inner_text(".asks")
        shot(page, "interrupt")
        page.fill(".asks textarea[name=answer]", '"lots"')  # the wrong type: refused, kept
        page.click(".asks button[type=submit]")
        page.wait_for_selector("#notice .note.bad")
        assert "integer" in page.inner_text("#notice")
        assert client.get(f"/runs/{run_id}").json()["status"] == "waiting"
        page.fill(".asks textarea[name=answer]", "4")
        page.fill(".asks input[name=by]", "ann")
        page.click(".asks button[type=submit]")
        page.wait_for_selector('#run-status[data-status="completed"]')
        assert client.get(f"/runs/{run_id}").json()["results"]["double"] == {"result": 10}
        page.goto(f"{server.url}/ui/runs/{run_id}?node=ask")
        assert "answered 4 by ann" in page.inner_text("#panel")


# -- a run started from the form, and two runs compared --------------------------------------------


def test_a_form_started_run_appears_and_two_runs_compare(tmp_path: Path, page: Any) -> None:
    answers = iter(["Paris", "Lyon"])
    model = ScriptedModel(lambda messages: {"answer": next(answers), "confidence": 0.9})
    app = create_app(qa_workflow(model=model), store=tmp_path / "runs.db", keys=[], record=True)
    with BackgroundServer(app) as server:
        made = []
        for question in ("capital of France?", "capital of France?"):
            page.goto(f"{server.url}/ui/new")
            page.fill("textarea[name=question]", question)
            if not made:
                shot(page, "new")
            page.click("#new-run button[type=submit]")
            page.wait_for_url("**/ui/runs/*")
            page.wait_for_selector('#run-status[data-status="completed"]')
            made.append(page.url.rsplit("/", 1)[1])
        page.goto(f"{server.url}/ui")
        for run_id in made:
            assert page.is_visible(f'tr[data-run="{run_id}"]')
            page.check(f'tr[data-run="{run_id}"] input[name=pick]')
        page.click("#compare-picked")
        page.wait_for_url("**/ui/compare?*")
        row = page.inner_text('tr[data-node="qa"]')
        assert "outputs" in row and row.index("Paris") < row.index("Lyon")  # the older is A
        assert page.inner_text('tr[data-node="shout"] .differs-list') == "outputs"
        shot(page, "compare")


SENT: list[tuple[str, str]] = []


@kaizen.tool(requires_approval=True)
def send_email(to: str, body: str) -> str:
    """Send an email."""
    SENT.append((to, body))
    return f"sent to {to}"


def test_a_tool_call_approved_in_the_page_runs_and_the_run_finishes(
    tmp_path: Path, page: Any
) -> None:
    SENT.clear()
    email = ScriptedModel.tool_call("send_email", {"to": "ann@example.com", "body": "hello"})
    model = ScriptedModel([email, {"answer": "done"}])
    mailer = kaizen.create_agent("mailer", "task -> answer", {"model": model}, tools=[send_email])
    builder = WorkflowBuilder("mail")
    builder.add_agent(mailer, "mail")
    app = create_app(builder.build(), store=tmp_path / "runs.db", keys=[], record=True)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        run_id = client.post("/runs", json={"task": "email ann"}).json()["run_id"]
        until(client, run_id, {"waiting"})
        page.goto(f"{server.url}/ui/runs/{run_id}")
        asks = page.inner_text(".asks")
        assert "approval of tool send_email" in asks and "ann@example.com" in asks
        assert SENT == []
        page.check(".asks input[name=decision][value=approve]")
        page.fill(".asks input[name=by]", "dana")
        page.click(".asks button[type=submit]")
        page.wait_for_selector('#run-status[data-status="completed"]')
        assert SENT == [("ann@example.com", "hello")]
        page.goto(f"{server.url}/ui/runs/{run_id}?node=mail")
        page.click("#panel details.tool-call summary")  # unfold the tool call
        panel = page.inner_text("#panel")
        assert "send_email" in panel and "sent to ann@example.com" in panel
        assert "by dana" in panel
