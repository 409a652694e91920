"""What a model reads for an MCP tool's result: `result_text` (and `error_text` for an
``isError`` result).

- text blocks as they are, joined with blank lines;
- structured content (``structuredContent``) as compact JSON. Servers also send it as JSON text
  for older clients; that copy is not repeated, and a plain value the SDK wrapped as
  ``{"result": value}`` is sent as the value's text;
- embedded text resources as their text; images, audio, binary resources and resource links as a
  one-line description (a model reading text cannot use the bytes).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["error_text", "result_text"]


def result_text(result: Any) -> str:
    """The text of a ``CallToolResult`` (see the module docstring)."""
    blocks = list(result.content or ())
    text = "\n\n".join(describe_block(block) for block in blocks)
    structured = getattr(result, "structured_content", None)
    if structured is None:
        return text
    if not blocks:
        return _json(structured)
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = _NOT_JSON
    if parsed == structured:  # the text is the structure's JSON: send it compactly
        return _json(structured)
    if structured in ({"result": parsed}, {"result": text}):  # the SDK wrapped a plain value
        return text
    return f"{text}\n\n{_json(structured)}"


_NOT_JSON = object()


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def error_text(result: Any) -> str:
    """The server's error text of an ``isError`` result (its text blocks)."""
    text = "\n\n".join(describe_block(block) for block in result.content or ()).strip()
    return text or "the tool reported an error without a message"


def describe_block(block: Any) -> str:
    """One content block as text."""
    kind = getattr(block, "type", None)
    if kind == "text":
        return str(block.text)
    if kind in ("image", "audio"):
        size = _decoded_size(getattr(block, "data", ""))
        return f"[{kind}: {getattr(block, 'mime_type', None) or 'unknown type'}, {size} bytes]"
    if kind == "resource_link":
        name = getattr(block, "name", None)
        return f"[resource link: {block.uri}" + (f" ({name})" if name else "") + "]"
    if kind == "resource":
        resource = block.resource
        text = getattr(resource, "text", None)
        if text is not None:
            return str(text)
        mime = getattr(resource, "mime_type", None) or "binary"
        size = _decoded_size(getattr(resource, "blob", ""))
        return f"[resource {resource.uri}: {mime}, {size} bytes]"
    return f"[{kind or type(block).__name__} content]"


def _decoded_size(data: str) -> int:
    """Bytes a base64 string decodes to, without decoding it."""
    data = data.strip()
    return max(0, len(data) * 3 // 4 - data[-2:].count("="))
