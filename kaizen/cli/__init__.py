"""The `kaizen` command: `render`, `run`, `ask`, `demo` (`app`), their shared helpers
(`support`), the live progress display (`progress`) and the demo (`demo`)."""

from kaizen.cli.app import app, main

__all__ = ["app", "main"]
