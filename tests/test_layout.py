"""The package's shape: no import circles, one adapter for litellm's private names, one way to
detect an event loop, no private asyncio API, `import kaizen` light, every public name exported."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import kaizen

ROOT = Path(__file__).resolve().parent.parent
# where each folder's modules live in the one `kaizen` package (pyproject's package-dir)
FOLDERS = {
    "kaizen": ROOT / "kaizen",
    "kaizen.signatures": ROOT / "signatures",
    "kaizen.nodes": ROOT / "nodes",
    "kaizen.patterns": ROOT / "patterns",
}


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join((package, *parts))
            if package == "kaizen" and parts and f"kaizen.{parts[0]}" in FOLDERS:
                continue
            found[name] = path
    return found


# The layers, bottom to top (docs/architecture.md, "Layers"). A module may import its own room
# (sub-package or top-level module) and any room of a lower layer, never a room of its own layer
# or above. A lower layer that needs something a higher one has receives it: a hook, a factory,
# a protocol, or a seam of `kaizen.seams` that the package root provides.
LAYERS: tuple[tuple[str, ...], ...] = (
    # the owner of process-wide state: every layer registers with it
    ("kaizen.process",),
    # text, errors and the types every layer shares
    (
        "kaizen.text",
        "kaizen.errors",
        "kaizen.missing",
        "kaizen.aio",
        "kaizen.flow",
        "kaizen.retrying",
        "kaizen.moments",
        "kaizen.interrupts",
        "kaizen.call_context",
        "kaizen.seams",
        "kaizen.logs",
    ),
    ("kaizen.signatures",),
    ("kaizen.nodes",),
    ("kaizen.workflow",),
    ("kaizen.llm",),
    ("kaizen.store",),
    ("kaizen.runtime",),
    ("kaizen.durable", "kaizen.render", "kaizen.observe", "kaizen.tools"),
    ("kaizen.plans",),
    ("kaizen.agents",),
    ("kaizen.patterns",),
    ("kaizen.targets",),
    ("kaizen.mcp", "kaizen.a2a"),
    ("kaizen.serve",),
    ("kaizen.cli", "kaizen.testing"),
    # the package root (every public name, loaded on first use; the seams' providers) and
    # `python -m kaizen`
    ("kaizen", "kaizen.__main__"),
)


def room(module: str) -> str:
    """The room of a module: its sub-package or top-level module (``kaizen.llm.call`` ->
    ``kaizen.llm``), or ``kaizen`` for the package root."""
    return ".".join(module.split(".")[:2])


def layer(module: str) -> int:
    for number, rooms in enumerate(LAYERS):
        if room(module) in rooms:
            return number
    raise AssertionError(f"{room(module)} has no layer: add it to LAYERS (and the docs' table)")


def imports(path: Path, module: str, known: set[str]) -> Iterator[str]:
    """Every Kaizen module `path` imports, with the line (see `located_imports`)."""
    for name, _ in located_imports(path, module, known):
        yield name


def located_imports(path: Path, module: str, known: set[str]) -> Iterator[tuple[str, int]]:
    """Every Kaizen module `path` imports and the line, at module level or inside functions,
    except under `if TYPE_CHECKING:` (those never run). In a module that uses importlib, a
    string naming a Kaizen module counts as an import of it (an import by name is an import)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(child) for child in ast.walk(node))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    by_name = "importlib" in path.read_text(encoding="utf-8")
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1]])
                base = f"{base}.{node.module}" if node.module else base
            # `from package import module` imports that module (its package is the importer's
            # own parent, already loading); `from module import name` imports the module
            submodules = [f"{base}.{alias.name}" for alias in node.names]
            names = [m for m in submodules if m in known] or [base]
        elif by_name and isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value.partition(":")[0]] if node.value.startswith("kaizen.") else []
        else:
            continue
        for name in names:
            if name in known:
                yield name, node.lineno


def test_every_import_points_to_a_lower_layer() -> None:
    """Lazy imports and imports by name included; only `if TYPE_CHECKING:` ones are left out."""
    found = modules()
    known = set(found)
    upward: list[str] = []
    for name, path in sorted(found.items()):
        for target, line in located_imports(path, name, known):
            if room(target) == room(name) or layer(target) < layer(name):
                continue
            upward.append(
                f"{path.relative_to(ROOT)}:{line}: {name} (layer {layer(name)}, {room(name)}) "
                f"imports {target} (layer {layer(target)}, {room(target)})"
            )
    assert not upward, "imports that do not point down:\n" + "\n".join(upward)


def test_the_layer_table_is_the_one_in_the_docs() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    documented = [
        tuple(sorted(part.strip(" `") for part in row.split("|")[2].split(","))) for row in rows[1:]
    ]
    assert documented == [tuple(sorted(rooms)) for rooms in LAYERS]


def test_lower_layers_reach_higher_ones_through_the_seams_before_anyone_imported_them() -> None:
    """`workflow.to_mermaid()`, `add_node("AgentNode", ...)`, a model call's cache step and
    `LocalRuntime(checkpoint=...)` work in a fresh process that imported only the layer below."""
    code = """
import sys, tempfile
from kaizen.nodes import get_node_type
from kaizen.workflow import WorkflowBuilder
assert get_node_type("AgentNode").__name__ == "AgentNode"
builder = WorkflowBuilder("w")
builder.add_node("ConstantNode", "c", {"value": 1})
assert "flowchart" in builder.build().to_mermaid()
from kaizen.runtime import LocalRuntime
runtime = LocalRuntime(checkpoint=tempfile.mkdtemp() + "/k.db")
results, run_id = runtime.execute(builder.build())
assert results["c"]["value"] == 1 and type(runtime.store).__module__ == "kaizen.store.sqlite"
print(sorted(m for m in ("kaizen.render", "kaizen.agents", "kaizen.durable") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['kaizen.agents', 'kaizen.durable', 'kaizen.render']"


def test_there_are_no_import_circles() -> None:
    found = modules()
    known = set(found)
    graph = {name: set(imports(path, name, known)) - {name} for name, path in found.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_signature_layer_and_the_node_layer_stay_below_the_agents() -> None:
    found = modules()
    known = set(found)
    for name, path in found.items():
        targets = set(imports(path, name, known))
        if name.startswith("kaizen.signatures"):
            assert not {t for t in targets if t.startswith("kaizen.nodes")}, name
        if name.startswith(("kaizen.signatures", "kaizen.nodes")):
            upward = {t for t in targets if t.startswith(("kaizen.agents", "kaizen.runtime"))}
            assert not upward, f"{name} imports {upward}"


def source_files() -> Iterator[Path]:
    for folder in FOLDERS.values():
        yield from folder.rglob("*.py")


def test_private_litellm_names_are_touched_in_the_adapter_only() -> None:
    adapter = ROOT / "kaizen" / "llm" / "litellm_adapter.py"
    for path in source_files():
        if path == adapter:
            continue
        text = path.read_text(encoding="utf-8")
        for private in ("_hidden_params", "_custom_providers", "_internal_context"):
            assert private not in text, f"{path.relative_to(ROOT)} touches litellm.{private}"


def test_the_private_litellm_names_the_adapter_relies_on_still_exist() -> None:
    """Fails loudly the day a litellm upgrade removes one (see PRIVATE_NAMES)."""
    from kaizen.llm.litellm_adapter import missing_private_names

    assert missing_private_names() == []


def detects_a_loop(tree: ast.AST) -> bool:
    """True when code asks "is a loop running?" itself: `get_running_loop()` inside a `try`
    that catches RuntimeError."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        calls = [ast.unparse(n) for stmt in node.body for n in ast.walk(stmt)]
        catches = [ast.unparse(h.type) for h in node.handlers if h.type is not None]
        if any("get_running_loop" in c for c in calls) and any(
            "RuntimeError" in c for c in catches
        ):
            return True
    return False


def test_one_way_to_detect_a_running_loop_and_no_private_asyncio() -> None:
    for path in source_files():
        text = path.read_text(encoding="utf-8")
        assert "asyncio._" not in text, f"{path.relative_to(ROOT)} uses a private asyncio API"
        if path.name != "aio.py":
            assert not detects_a_loop(ast.parse(text)), (
                f"{path.relative_to(ROOT)} detects a running loop itself; use "
                "kaizen.aio.running_loop()"
            )


@pytest.mark.parametrize("name", sorted(kaizen.__all__))
def test_every_public_name_is_importable_from_kaizen(name: str) -> None:
    assert getattr(kaizen, name) is not None


def test_import_kaizen_loads_nothing_heavy() -> None:
    code = (
        "import sys, kaizen; heavy = ['litellm', 'pydantic', 'networkx', 'jinja2', 'rich', "
        "'kaizen.runtime', 'kaizen.agents']; print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_package_is_listed_for_installation() -> None:
    """A package missing from pyproject's list works in the editable install and vanishes from
    a regular one (the type check's, a user's)."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    mapping = config["tool"]["setuptools"].get("package-dir", {})
    for name, folder in FOLDERS.items():
        for init in folder.rglob("__init__.py"):
            relative = init.parent.relative_to(folder).parts
            package = ".".join((name, *relative))
            assert package in listed, f"{package} is missing from pyproject's packages"
    assert set(mapping) <= listed


def test_no_module_reads_an_agents_private_attributes() -> None:
    """`Agent`'s state is its own: nodes, outcomes and layer 4 use its public methods."""
    agent_module = ROOT / "kaizen" / "agents" / "agent.py"
    for path in (ROOT / "kaizen").rglob("*.py"):
        if path == agent_module:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
                continue
            owner = ast.unparse(node.value)
            if owner.split(".")[-1] == "agent" and not node.attr.startswith("__"):
                raise AssertionError(
                    f"{path.relative_to(ROOT)}:{node.lineno} reads {owner}.{node.attr}"
                )


def test_no_module_is_over_600_lines() -> None:
    """One room per concern, each small enough to read whole (issue 20)."""
    long = [
        f"{path.relative_to(ROOT)}: {count} lines"
        for path in source_files()
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > 600
    ]
    assert not long, "split these modules: " + ", ".join(long)
