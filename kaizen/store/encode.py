"""How values are written to the store and read back: `encode` / `decode`, and `canonical_json`.

The encoding is JSON, so a stored value can be read by anything. Beyond the JSON types
(str, int, float, bool, None, lists, dicts with str keys) it keeps:

    pydantic models   {"__kaizen__": "pydantic", "type": "module:Qualname", "data": {...}}
    dataclasses       {"__kaizen__": "dataclass", "type": "module:Qualname", "data": {...}}
    tuple, set, frozenset, bytes, datetime, date, enum members, dicts with non-str keys
                      tagged the same way, so they come back as what they were

Classes are imported again by name when decoded, so they must be importable (module level).
A value none of these fit is an `EncodeError` naming the node and port it came from, unless
pickle was asked for (`allow_pickle=True`): then the whole value is pickled (only for stores
nobody untrusted can write to: unpickling runs code).

`canonical_json` is the stable text of a JSON value (sorted keys, no spaces): the cache and
recordings hash it, so the order of keys never changes a key.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import enum
import importlib
import json
import pickle
from collections.abc import Mapping
from typing import Any

from kaizen.errors import EncodeError

__all__ = ["TAG", "canonical_json", "decode", "decode_outputs", "encode", "encode_outputs"]

TAG = "__kaizen__"
_SCALARS = (str, int, float, bool, type(None))
_PLAIN = frozenset({str, int, bool, type(None)})  # stored as they are (a float may be NaN)
# one encoder for every checkpoint (json.dumps with options builds a new one per call); the
# values it gets come from `_encode`, fresh and free of cycles
_to_json = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode


def canonical_json(value: Any) -> str:
    """Stable JSON text: sorted keys, no whitespace, non-ASCII kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def encode(value: Any, *, node_id: str | None = None, port: str | None = None) -> Any:
    """`value` as a JSON value (see the module docstring); `EncodeError` when it cannot be."""
    return _encode(value, node_id, port)


def decode(value: Any) -> Any:
    """The value `encode` was given (classes imported again by name)."""
    if isinstance(value, list):
        return [decode(item) for item in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(TAG)
    if tag is None:
        return {key: decode(item) for key, item in value.items()}
    data: Any = value.get("data")
    if tag == "dict":  # a plain dict that held the tag key, or non-str keys
        return {decode(k): decode(v) for k, v in data}
    if tag == "tuple":
        return tuple(decode(item) for item in data)
    if tag == "set":
        return {decode(item) for item in data}
    if tag == "frozenset":
        return frozenset(decode(item) for item in data)
    if tag == "float":
        return float(data)
    if tag == "bytes":
        return base64.b64decode(data)
    if tag == "datetime":
        return datetime.datetime.fromisoformat(data)
    if tag == "date":
        return datetime.date.fromisoformat(data)
    cls = _import(value["type"])
    if tag == "enum":
        return cls(decode(data))
    if tag == "pydantic":
        return cls.model_validate(decode(data))
    if tag == "dataclass":
        return cls(**{key: decode(item) for key, item in data.items()})
    raise ValueError(f"unknown stored value tag {tag!r}")


def encode_outputs(
    outputs: Mapping[str, Any], *, node_id: str, allow_pickle: bool = False
) -> tuple[str, bytes]:
    """A node's outputs as `(encoding, bytes)`: JSON when every port encodes, else pickle when
    allowed, else `EncodeError` naming the node and the port."""
    try:
        encoded = {
            port: value if type(value) in _PLAIN else _encode(value, node_id, port)
            for port, value in outputs.items()
        }
    except EncodeError:
        if not allow_pickle:
            raise
        try:
            return "pickle", pickle.dumps(dict(outputs), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise EncodeError(
                f"node {node_id!r}: its outputs cannot be pickled either ({exc})",
                node_id=node_id,
            ) from exc
    return "json", _to_json(encoded).encode()


def decode_outputs(encoding: str, data: bytes) -> dict[str, Any]:
    """The outputs `encode_outputs` stored."""
    if encoding == "pickle":
        return dict(pickle.loads(data))  # only ever written when pickle was asked for
    decoded = decode(json.loads(data))
    assert isinstance(decoded, dict)
    return decoded


def _encode(value: Any, node_id: str | None, port: str | None) -> Any:
    if isinstance(value, _SCALARS) and not isinstance(value, enum.Enum):
        if isinstance(value, float) and value != value:  # NaN: JSON has none, keep it tagged
            return {TAG: "float", "data": "nan"}
        return value
    if isinstance(value, list):
        return [_encode(item, node_id, port) for item in value]
    if isinstance(value, dict):
        if all(type(key) is str for key in value) and TAG not in value:
            return {key: _encode(item, node_id, port) for key, item in value.items()}
        pairs = [[_encode(k, node_id, port), _encode(v, node_id, port)] for k, v in value.items()]
        return {TAG: "dict", "data": pairs}
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return {TAG: "tuple", "data": [_encode(item, node_id, port) for item in value]}
    if isinstance(value, set | frozenset):
        tag = "set" if isinstance(value, set) else "frozenset"
        items = sorted((_encode(item, node_id, port) for item in value), key=canonical_json)
        return {TAG: tag, "data": items}
    if isinstance(value, bytes):
        return {TAG: "bytes", "data": base64.b64encode(value).decode()}
    if isinstance(value, datetime.datetime):
        return {TAG: "datetime", "data": value.isoformat()}
    if isinstance(value, datetime.date):
        return {TAG: "date", "data": value.isoformat()}
    if isinstance(value, enum.Enum):
        return {
            TAG: "enum",
            "type": _name(type(value)),
            "data": _encode(value.value, node_id, port),
        }
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump) and hasattr(type(value), "model_validate"):
        data = model_dump(mode="json")
        return {TAG: "pydantic", "type": _name(type(value)), "data": data}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = {
            f.name: _encode(getattr(value, f.name), node_id, port)
            for f in dataclasses.fields(value)
            if f.init
        }
        return {TAG: "dataclass", "type": _name(type(value)), "data": data}
    where = f"node {node_id!r} output {port!r}" if node_id else "the value"
    raise EncodeError(
        f"{where}: a {type(value).__module__}.{type(value).__qualname__} cannot be stored "
        "(checkpoints keep JSON types, pydantic models, dataclasses, tuples, sets, bytes, "
        "dates and enums); return one of those, or allow pickle "
        "(LocalRuntime(checkpoint=..., allow_pickle=True))",
        node_id=node_id,
        port=port,
        type_name=type(value).__qualname__,
    )


def _name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _import(name: str) -> Any:
    module, _, qualname = name.partition(":")
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target
