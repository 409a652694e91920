"""mkdocs hooks for the documentation site (`make docs`): the notebooks and the API reference.

The notebooks live in ``notebooks/`` (beside the code they run against, and executed by the
test command); they are added to the site as they are committed (without outputs), rendered by
mkdocs-jupyter. The API reference is one page, ``reference.md``, generated from
``kaizen.__all__``: every public name, documented by mkdocstrings from its docstring, so a name
added without a docstring, or removed, changes the site, and a docstring mkdocstrings cannot
read fails the strict build.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"


def on_config(config: Any) -> Any:
    """The notebooks, one page each, as the last section of the navigation."""
    pages = [{_title(n): f"notebooks/{n.name}"} for n in sorted(NOTEBOOKS.glob("*.ipynb"))]
    config["nav"].append({"Notebooks": pages})
    return config


def _title(notebook: Path) -> str:
    """``01_signature_to_run.ipynb`` -> ``01 signature to run``."""
    return notebook.stem.replace("_", " ")


@event_priority(100)  # before mkdocs-jupyter's own on_files, which renders what it finds
def on_files(files: Files, config: Any) -> Files:
    for notebook in sorted(NOTEBOOKS.glob("*.ipynb")):
        files.append(
            File(
                f"notebooks/{notebook.name}",
                src_dir=str(ROOT),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    files.append(File.generated(config, "reference.md", content=reference_page()))
    return files


# public names that live in the package's rooms rather than at its root
ROOM_NAMES = (
    "kaizen.mcp.client.MCPServer",
    "kaizen.a2a.remote.RemoteAgent",
    "kaizen.a2a.remote.RemoteAgentError",
    "kaizen.serve.app.create_app",
    "kaizen.serve.server.BackgroundServer",
    "kaizen.serve.ui.app.create_browser_app",
    "kaizen.testing.scripted.ScriptedModel",
)


def reference_page() -> str:
    """Every public name of `kaizen`, grouped by the module that defines it, then the public
    names of its rooms (MCP and A2A toolsets, serving, testing)."""
    import kaizen

    by_module: dict[str, list[str]] = {}
    for name in kaizen.__all__:
        value = getattr(kaizen, name)
        module = getattr(value, "__module__", None) or "kaizen"
        if not hasattr(importlib.import_module(module), name):
            module = "kaizen"
        by_module.setdefault(module, []).append(name)
    lines = [
        "# API reference",
        "",
        "Every public name of `kaizen` (`kaizen.__all__`), from its docstring, grouped by the",
        "module that defines it. `import kaizen` loads each one on first use.",
        "",
    ]
    for module in sorted(by_module):
        lines += [f"## `{module}`", ""]
        for name in by_module[module]:
            lines += [f"::: {module}.{name}", "    options:", "      heading_level: 3", ""]
    lines += ["## The rooms", ""]
    for path in ROOM_NAMES:
        lines += [f"::: {path}", "    options:", "      heading_level: 3", ""]
    return "\n".join(lines)
