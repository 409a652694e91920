"""A2A message parts as Kaizen reads and writes them: JSON values in data parts, text as is.
Shared by the client (`RemoteAgent`) and the server (`kaizen.serve.a2a`)."""

from __future__ import annotations

import json
from typing import Any

from a2a.types.a2a_pb2 import Part
from google.protobuf import json_format, struct_pb2

__all__ = ["data_part", "part_value"]


def data_part(value: Any) -> Part:
    """A data part holding any JSON value."""
    holder = struct_pb2.Value()
    json_format.ParseDict(json.loads(json.dumps(value, default=str)), holder)
    return Part(data=holder, media_type="application/json")


def part_value(part: Part) -> Any:
    """What a part holds: its text, or its data as plain JSON (None for files). A data part's
    numbers are doubles on the wire (protobuf's ``Value``): whole ones come back as ints, as the
    JSON they were written from had them."""
    if part.HasField("data"):
        return _whole(json_format.MessageToDict(part.data))
    if part.HasField("text"):
        return part.text
    return None


def _whole(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, list):
        return [_whole(v) for v in value]
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    return value
