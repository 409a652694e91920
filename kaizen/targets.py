"""Targets: the agent or workflow a command names as `module:attr` or `path/to/file.py:attr`,
loaded (`load_object`, `load_target`), and results as JSON (`to_json`).

Shared by the commands that take a target: `kaizen run` and the other `kaizen.cli` commands,
`kaizen serve` (`kaizen.serve`) and `kaizen mcp serve` (`kaizen.mcp.serve`); it sits below all
three, so none of them imports another for it. Imports only the standard library at module
level.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import importlib.util
import json
import os
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kaizen.agents.agent import Agent
    from kaizen.workflow.workflow import Workflow

__all__ = ["CliError", "load_object", "load_target", "to_json"]


class CliError(Exception):
    """A command-line request that cannot be carried out; the message says what to change.

    Raised for a target that cannot be loaded, and by the commands themselves
    (`kaizen.cli.support` re-exports it)."""


def load_object(target: str) -> Any:
    """Import `module:attr` or `path/to/file.py:attr` (attr may be dotted) and return the object."""
    module_part, sep, attr = target.rpartition(":")
    if not sep or not module_part or not attr:
        raise CliError(
            f"{target!r} is not a target; write module:attr (e.g. flows:pipeline) "
            "or path/to/file.py:attr"
        )
    module = _import_module(module_part)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            names = sorted(n for n in vars(module) if not n.startswith("_"))
            shown = ", ".join(names[:20]) + (", …" if len(names) > 20 else "")
            raise CliError(
                f"{module_part!r} has no attribute {attr!r} (it defines: {shown or 'nothing'})"
            ) from None
    return obj


def _import_module(name: str) -> ModuleType:
    looks_like_file = name.endswith(".py") or os.sep in name or "/" in name
    if looks_like_file:
        path = Path(name).expanduser().resolve()
        if not path.is_file():
            raise CliError(f"no such file: {name}")
        folder = str(path.parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)  # so the file can import its neighbours
        module_name = "_kaizen_target_" + re.sub(r"\W", "_", path.stem)
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise CliError(f"cannot load {name} as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        loader = spec.loader
        _run_import(lambda: loader.exec_module(module), name)
        return module
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    result: list[ModuleType] = []
    _run_import(lambda: result.append(importlib.import_module(name)), name)
    return result[0]


def _run_import(load: Any, name: str) -> None:
    try:
        load()
    except ModuleNotFoundError as exc:
        if exc.name and name.split(".")[0] == exc.name.split(".")[0]:
            raise CliError(
                f"cannot import {name!r}: no such module in {os.getcwd()} or on sys.path "
                "(run from the folder that holds it, or pass path/to/file.py:attr)"
            ) from exc
        raise CliError(f"importing {name!r} failed: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise CliError(f"importing {name!r} failed: {type(exc).__name__}: {exc}") from exc


def load_target(target: str) -> Agent | Workflow:
    """The agent or workflow `module:attr` names (a builder is built, a function called with
    no arguments). Raises `CliError` saying what was found instead."""
    from kaizen.agents.agent import Agent
    from kaizen.workflow.workflow import Workflow

    obj = load_object(target)
    for attempt in range(2):
        if isinstance(obj, Agent | Workflow):
            return obj
        if not isinstance(obj, type) and callable(getattr(obj, "build", None)):
            return _built(obj, target)
        if attempt == 0 and callable(obj) and not isinstance(obj, type) and _takes_nothing(obj):
            try:
                obj = obj()
            except Exception as exc:
                raise CliError(f"calling {target}() failed: {type(exc).__name__}: {exc}") from exc
            continue
        break
    raise CliError(
        f"{target} is a {type(obj).__name__}; `kaizen serve` (or `kaizen mcp serve`) takes an "
        "Agent, a Workflow, a WorkflowBuilder, or a function returning one of them"
    )


def _takes_nothing(func: Any) -> bool:
    import inspect

    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    return all(
        p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in parameters
    )


def _built(builder: Any, target: str) -> Workflow:
    from kaizen.workflow.workflow import Workflow

    built = builder.build()
    if not isinstance(built, Workflow):
        raise CliError(f"{target}.build() returned {type(built).__name__}, not a Workflow")
    return built


def _json_default(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # pydantic models
        return dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def to_json(value: Any) -> str:
    """Indented JSON of any result; what JSON cannot hold is shown as its repr."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=_json_default)
