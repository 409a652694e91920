"""The host program's logging is its own: `host_logging_kept`, around every lazy import.

Some optional dependencies configure the root logger when imported (wordllama calls
`logging.basicConfig(level=INFO)`, after which every model call prints LiteLLM's INFO lines). A
library must not change the logging of the program that uses it, so Kaizen imports its optional
dependencies (wordllama, litellm, mcp, ray, opentelemetry) inside `host_logging_kept()`, which
puts the root logger's handlers and level back as they were.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["host_logging_kept"]


@contextmanager
def host_logging_kept() -> Iterator[None]:
    """Run the block, then restore the root logger's handlers and level to what they were."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        if root.handlers != handlers or root.level != level:
            for handler in root.handlers:
                if handler not in handlers:
                    root.removeHandler(handler)
            for handler in handlers:
                if handler not in root.handlers:
                    root.addHandler(handler)
            root.setLevel(level)
