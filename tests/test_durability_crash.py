"""`durability="sync"` under SIGKILL: a node whose completion anyone saw, or whose dependants
started, never runs again.

Hypothesis draws a workflow (a chain, a fan-out or a diamond; sync and async nodes) and the node
that kills its own process with SIGKILL the first time it runs. Every node logs, to a file the
test reads, when it runs and (through a hook) when the run reports it finished. The run is
resumed in a new process; then every node logged as finished, or as the source of a node that
started, before the kill ran zero more times, and the results equal an uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.slow

MAIN = textwrap.dedent(
    """
    import json, os, sys
    sys.path.insert(0, sys.argv[1])
    from kaizen import LocalRuntime
    from kaizen.runtime.hooks import NodeFinishHook
    from flow import build, log

    class Seen(NodeFinishHook):
        def on_node_finish(self, event):
            log(f"done {event.node_id}")

    mode, store = sys.argv[2], sys.argv[3]
    runtime = LocalRuntime(checkpoint=store or False, hooks=[Seen()], durability="sync")
    if mode == "run":
        results, _ = runtime.execute(build(), {"n0": {"value": 1}}, run_id="run-1")
    else:
        results, _ = runtime.resume("run-1", build())
    print(json.dumps(results, sort_keys=True))
    """
)

PRELUDE = textwrap.dedent(
    """
    import asyncio, os, signal
    from pathlib import Path
    from kaizen import WorkflowBuilder

    LOG = Path(os.environ["LOG"])
    KILLER = os.environ.get("KILLER")

    def log(line):
        with open(LOG, "a") as f:
            f.write(line + "\\n")

    def enter(name):
        log(f"run {name}")
        marker = LOG.with_suffix(".killed")
        if name == KILLER and not marker.exists():
            marker.write_text("")
            os.kill(os.getpid(), signal.SIGKILL)
    """
)


@dataclass(frozen=True)
class Shape:
    """A workflow: node i reads the outputs of `sources[i]` (n0 reads the parameter)."""

    sources: tuple[tuple[int, ...], ...]
    is_async: tuple[bool, ...]

    def source(self) -> str:
        lines = [PRELUDE]
        for i, sources in enumerate(self.sources):
            args = ["value"] if not sources else [f"v{s}" for s in sources]
            params = ", ".join(f"{a}: int" for a in args)
            body = f"enter('n{i}'); return {i} + " + " + ".join(args)
            prefix = "async def" if self.is_async[i] else "def"
            pause = "    await asyncio.sleep(0)\n" if self.is_async[i] else ""
            lines.append(f"{prefix} f{i}({params}) -> int:\n{pause}    {body}\n")
        lines.append("def build():")
        lines.append("    wf = WorkflowBuilder('crash')")
        for i in range(len(self.sources)):
            lines.append(f"    wf.add_node('FunctionNode', 'n{i}', {{'function': f{i}}})")
        for i, sources in enumerate(self.sources):
            for s in sources:
                lines.append(f"    wf.add_connection('n{s}', 'result', 'n{i}', 'v{s}')")
        lines.append("    return wf.build()")
        return "\n".join(lines) + "\n"


@st.composite
def shapes(draw: st.DrawFn) -> Shape:
    kind = draw(st.sampled_from(["chain", "fan-out", "diamond"]))
    width = draw(st.integers(2, 5))
    if kind == "chain":
        sources: list[tuple[int, ...]] = [()] + [(i,) for i in range(width)]
    elif kind == "fan-out":
        sources = [()] + [(0,)] * width
    else:
        sources = [()] + [(0,)] * width + [tuple(range(1, width + 1))]
    is_async = tuple(draw(st.lists(st.booleans(), min_size=len(sources), max_size=len(sources))))
    return Shape(tuple(sources), is_async)


def _child(folder: Path, mode: str, store: str, log: Path, killer: str = "") -> subprocess.Popen:
    env = {**os.environ, "LOG": str(log), "KILLER": killer}
    return subprocess.Popen(
        [sys.executable, str(folder / "main.py"), str(folder), mode, store],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _lines(log: Path) -> list[tuple[str, str]]:
    if not log.exists():
        return []
    return [tuple(line.split(" ", 1)) for line in log.read_text().splitlines()]  # type: ignore[misc]


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(shape=shapes(), data=st.data())
def test_a_node_whose_completion_was_seen_never_runs_again_after_sigkill(
    tmp_path_factory: pytest.TempPathFactory, shape: Shape, data: st.DataObject
) -> None:
    folder = tmp_path_factory.mktemp("crash")
    (folder / "flow.py").write_text(shape.source())
    (folder / "main.py").write_text(MAIN)
    killer = f"n{data.draw(st.integers(0, len(shape.sources) - 1), label='killer')}"
    store, log = str(folder / "kaizen.db"), folder / "log"

    victim = _child(folder, "run", store, log, killer)
    _, err = victim.communicate(timeout=120)
    assert victim.returncode == -signal.SIGKILL, err
    before = _lines(log)
    seen = {node for what, node in before if what == "done"}
    started = {node for what, node in before if what == "run"}
    # a node whose dependant started had completed and been committed before it
    fed = {f"n{s}" for i, sources in enumerate(shape.sources) if f"n{i}" in started
           for s in sources}  # fmt: skip

    resumed = _child(folder, "resume", store, log)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    after = _lines(log)[len(before) :]
    reran = {node for what, node in after if what == "run"}
    assert not reran & (seen | fed), (
        f"re-ran after resume: {sorted(reran & (seen | fed))}; killed in {killer}"
    )
    assert killer in reran  # the node killed mid-way ran again, and only what had not finished

    clean_folder = tmp_path_factory.mktemp("clean")
    (clean_folder / "flow.py").write_text(shape.source())
    (clean_folder / "main.py").write_text(MAIN)
    clean = _child(clean_folder, "run", "", clean_folder / "log")
    clean_out, err = clean.communicate(timeout=120)
    assert clean.returncode == 0, err
    assert json.loads(out) == json.loads(clean_out)
