"""Model and tool calls in the store: the cache, recordings, and replay.

One step sits in front of every model call (`model_call_step`, called by
`kaizen.llm.call.model_call`) and, for the tool executor, every tool call (`tool_call_step`):

    step = model_call_step(kwargs, cache_option, node_id)   # None: nothing applies, no cost
    served = step.lookup()     # a reply from the recording (replay) or the cache, else None
    ... make the call ...
    step.keep(reply)           # record it (record=True), cache it (cache on)

The request key (`request_key`) is a hash of the canonical JSON (sorted keys) of every field
that changes what the model generates: model, messages, response format, tools, tool choice,
temperature, max tokens and any other provider parameter. Never credentials or where the call
goes (`api_key`, headers, `api_base`), nor how long to wait (`timeout`, retries).

Cache: opt-in, per agent (`config={"cache": True}`) or per runtime (`LocalRuntime(cache=True)`);
an option is True or a dict ``{"ttl": seconds, "sampled": bool, "path": store path}``. Lookups go
to an in-process LRU first, then the store. Calls with temperature > 0 are not cached unless
``"sampled": True``. A hit costs nothing and is counted in `Usage.cache_hits`.

Recording (`LocalRuntime(record=True)`): each model and tool call of a run is stored under
(node id, kind, request key, occurrence): the n-th time that node made that request. Keys do
not depend on the order in which concurrent nodes called, so a replay of concurrent steps
matches whatever order they run in this time.

Replay (`kaizen.replay(run_id, workflow)`): every call is served from the recording; a call
the recording does not hold raises `ReplayMismatchError` naming the node and showing how the
request differs from the closest one that node recorded. Nothing reaches a model or a tool.

The run's settings travel in a context variable (`active_calls`), set by the runtime for the
run: the nodes' threads and tasks see it, nothing has to be passed down.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from kaizen import process
from kaizen.call_context import current_call_context
from kaizen.errors import ConfigError, EncodeError, ReplayMismatchError
from kaizen.store.db import Store, StorePath, store_of_run
from kaizen.store.encode import canonical_json, decode, encode

__all__ = [
    "CachePolicy",
    "Memo",
    "ModelCallStep",
    "RunCalls",
    "ToolCallStep",
    "active_calls",
    "cache_policy",
    "memoized",
    "model_call_step",
    "remember",
    "request_key",
    "tool_call_step",
]

# Fields that never change what a model generates: credentials, routing, waiting, streaming.
IGNORED_FIELDS = frozenset(
    {
        "api_key", "api_base", "base_url", "headers", "extra_headers", "timeout",
        "num_retries", "max_retries", "stream", "stream_options", "metadata", "http_version",
        "aws_access_key_id", "aws_secret_access_key", "aws_session_token",
    }
)  # fmt: skip
LRU_SIZE = 1024


def request_fields(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a request that change generation (see `IGNORED_FIELDS`), as JSON."""
    fields = {k: v for k, v in kwargs.items() if k not in IGNORED_FIELDS}
    return json.loads(json.dumps(fields, default=_opaque))  # JSON types only from here on


def request_key(fields: Mapping[str, Any], kind: str = "model") -> str:
    """The hash of canonical request fields: equal for equal requests, whatever the key order."""
    return hashlib.sha256(f"{kind}\n{canonical_json(fields)}".encode()).hexdigest()


def _opaque(value: Any) -> str:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return canonical_json(dump(mode="json"))
    return f"<{type(value).__qualname__}>"


# -- the cache -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CachePolicy:
    """How calls are cached: `ttl` seconds (None: no expiry); `sampled`: cache calls with
    temperature > 0 too; `path`: where (None: the store of the running run, else the default
    store)."""

    ttl: float | None = None
    sampled: bool = False
    path: StorePath | None = None

    def applies_to(self, fields: Mapping[str, Any]) -> bool:
        temperature = fields.get("temperature")
        return self.sampled or not temperature

    def store(self) -> Store:
        """`path`'s store, else the running run's store, else the default one."""
        return store_of_run(self.path)


def cache_policy(option: Any) -> CachePolicy | None:
    """A cache option (None/False: off; True; a dict; a `CachePolicy`) as a policy, or None."""
    if option is None or option is False:
        return None
    if option is True:
        return CachePolicy()
    if isinstance(option, CachePolicy):
        return option
    if isinstance(option, Mapping):
        unknown = set(option) - {"ttl", "sampled", "path"}
        if unknown:
            raise ConfigError(
                f"cache option has unknown keys {sorted(unknown)}; use ttl (seconds), sampled "
                "(cache temperature > 0 calls too) and path (the store)"
            )
        ttl = option.get("ttl")
        if ttl is not None and (not isinstance(ttl, int | float) or ttl <= 0):
            raise ConfigError(f"cache ttl must be a positive number of seconds, got {ttl!r}")
        return CachePolicy(ttl, bool(option.get("sampled", False)), option.get("path"))
    raise ConfigError(f"cache must be True, False or a dict of options, got {option!r}")


class _Lru:
    """The in-process level of the cache, per store: key -> (response, expires)."""

    def __init__(self, size: int = LRU_SIZE) -> None:
        self.size = size
        self.items: OrderedDict[str, tuple[Any, float | None]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: str) -> Any | None:
        with self.lock:
            item = self.items.get(key)
            if item is None:
                return None
            if item[1] is not None and item[1] < time.time():
                del self.items[key]
                return None
            self.items.move_to_end(key)
            return item[0]

    def put(self, key: str, value: Any, expires: float | None) -> None:
        with self.lock:
            self.items[key] = (value, expires)
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)


_lrus: dict[str, _Lru] = {}
_lrus_lock = threading.Lock()


def _lru(store: Store) -> _Lru:
    with _lrus_lock:
        lru = _lrus.get(store.path)
        if lru is None:
            lru = _lrus[store.path] = _Lru()
        return lru


def _cache_get(policy: CachePolicy, key: str) -> Any | None:
    store = policy.store()
    lru = _lru(store)
    found = lru.get(key)
    if found is not None:
        return found
    rows = store.read("SELECT response, expires FROM cache WHERE key = ?", (key,))
    if not rows or (rows[0][1] is not None and rows[0][1] < time.time()):
        return None
    value = json.loads(rows[0][0])
    lru.put(key, value, rows[0][1])
    return value


def _cache_put(policy: CachePolicy, key: str, kind: str, value: Any) -> None:
    store = policy.store()
    now = time.time()
    expires = None if policy.ttl is None else now + policy.ttl
    with store.write() as db:
        db.execute(
            "INSERT INTO cache VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
            " kind = excluded.kind, response = excluded.response, created = excluded.created,"
            " expires = excluded.expires",
            (key, kind, json.dumps(value), now, expires),
        )
    _lru(store).put(key, value, expires)


# -- a run's calls -------------------------------------------------------------------------------


@dataclass
class RunCalls:
    """What a run does with its calls: record them, serve them from a recording, cache them."""

    store: Store
    run_id: str
    record: bool = False
    replay_of: str | None = None  # the recorded run serving every call
    cache: CachePolicy | None = None
    _seen: dict[tuple[str, str, str], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def occurrence(self, node_id: str, kind: str, key: str) -> int:
        """How many times `node_id` made this request before in this run (0 the first time)."""
        with self._lock:
            n = self._seen.get((node_id, kind, key), 0)
            self._seen[(node_id, kind, key)] = n + 1
            return n

    def recorded(self, node_id: str, kind: str, key: str, occurrence: int, fields: Any) -> Any:
        """The recorded response, or `ReplayMismatchError` (see the module docstring)."""
        rows = self.store.read(
            "SELECT response FROM recordings WHERE run_id = ? AND node_id = ? AND kind = ?"
            " AND key = ? AND occurrence = ?",
            (self.replay_of, node_id, kind, key, occurrence),
        )
        if rows:
            return json.loads(rows[0][0])
        raise self._mismatch(node_id, kind, key, occurrence, fields)

    def keep(
        self, node_id: str, kind: str, key: str, occurrence: int, fields: Any, response: Any
    ) -> None:
        with self.store.write() as db:
            db.execute(
                "INSERT INTO recordings VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    self.run_id, node_id, kind, key, occurrence, canonical_json(fields),
                    json.dumps(response),
                ),
            )  # fmt: skip

    def _mismatch(
        self, node_id: str, kind: str, key: str, occurrence: int, fields: Any
    ) -> ReplayMismatchError:
        rows = self.store.read(
            "SELECT key, occurrence, request FROM recordings WHERE run_id = ? AND node_id = ?"
            " AND kind = ?",
            (self.replay_of, node_id, kind),
        )
        what = "model call" if kind == "model" else "tool call"
        if any(k == key for k, _, _ in rows):
            times = sum(1 for k, _, _ in rows if k == key)
            return ReplayMismatchError(
                f"replay of run {self.replay_of!r}: node {node_id!r} made the same {what} "
                f"{occurrence + 1} times; the recording holds it {times} time(s)",
                node_id=node_id,
            )
        mine = _pretty(fields)
        if not rows:
            others = self.store.read(
                "SELECT DISTINCT node_id FROM recordings WHERE run_id = ? AND kind = ?",
                (self.replay_of, kind),
            )
            names = ", ".join(repr(r[0]) for r in others) or "none"
            return ReplayMismatchError(
                f"replay of run {self.replay_of!r}: node {node_id!r} made a {what} but recorded "
                f"none (nodes with recorded {what}s: {names}). Request:\n{mine}",
                node_id=node_id,
            )
        closest = max(
            (_pretty(json.loads(r[2])) for r in rows),
            key=lambda text: difflib.SequenceMatcher(None, text, mine).ratio(),
        )
        diff = "\n".join(
            difflib.unified_diff(
                closest.splitlines(), mine.splitlines(), "recorded", "now", lineterm="", n=1
            )
        )
        return ReplayMismatchError(
            f"replay of run {self.replay_of!r}: node {node_id!r} made a {what} the recording "
            f"does not hold. How it differs from the closest recorded one:\n{diff}",
            node_id=node_id,
            diff=diff,
        )


active_calls: ContextVar[RunCalls | None] = ContextVar("kaizen_run_calls", default=None)


def _pretty(value: Any) -> str:
    return json.dumps(value, sort_keys=True, indent=1, ensure_ascii=False)


# -- the steps -----------------------------------------------------------------------------------


@dataclass
class Memo:
    """A lookup's answer: `hit`, and the `value` when there was one."""

    hit: bool
    value: Any = None


class _Step:
    kind = "model"

    def __init__(
        self, fields: dict[str, Any], node_id: str | None, run: RunCalls | None,
        cache: CachePolicy | None,
    ) -> None:  # fmt: skip
        self.fields = fields
        self.key = request_key(fields, self.kind)
        self.node_id = node_id
        self.run = run
        self.cache = cache
        self.occurrence = 0
        if run is not None and node_id is not None:
            self.occurrence = run.occurrence(node_id, self.kind, self.key)
        self.cache_hit = False

    def _lookup(self) -> Memo:
        run = self.run
        if run is not None and run.replay_of is not None and self.node_id is not None:
            return Memo(True, run.recorded(self.node_id, self.kind, self.key, self.occurrence,
                                           self.fields))  # fmt: skip
        if self.cache is not None:
            found = _cache_get(self.cache, self.key)
            if found is not None:
                self.cache_hit = True
                self._keep(found)  # a recorded run holds its cached calls too, for replay
                return Memo(True, found)
        return Memo(False)

    def _keep(self, response: Any) -> None:
        run = self.run
        if run is not None and run.record and self.node_id is not None:
            run.keep(self.node_id, self.kind, self.key, self.occurrence, self.fields, response)
        if self.cache is not None and not self.cache_hit:
            _cache_put(self.cache, self.key, self.kind, response)


class ModelCallStep(_Step):
    """The store's step in front of one model call (see the module docstring)."""

    kind = "model"

    def lookup(self) -> dict[str, Any] | None:
        """The served reply as a dict of `RawReply` fields, or None: make the call."""
        memo = self._lookup()
        return memo.value if memo.hit else None

    def keep(self, reply: Any) -> None:
        """Record and cache the `RawReply` the model sent."""
        if self.run is None and self.cache is None:
            return
        self._keep(
            {
                "text": reply.text,
                "tool_calls": [[c.id, c.name, c.arguments] for c in reply.tool_calls],
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": reply.completion_tokens,
                "cost": reply.cost,
                "finish_reason": reply.finish_reason,
            }
        )


def model_call_step(
    kwargs: Mapping[str, Any], cache_option: Any, node_id: str | None
) -> ModelCallStep | None:
    """The step for one model call, or None when nothing applies (no cost then)."""
    run = active_calls.get()
    if run is not None and not (run.record or run.replay_of):
        run_for_calls: RunCalls | None = None
    else:
        run_for_calls = run
    policy = cache_policy(cache_option) if cache_option is not None else None
    if policy is None and cache_option is None and run is not None:
        policy = run.cache
    if run_for_calls is None and policy is None:
        return None
    fields = request_fields(kwargs)
    if policy is not None and not policy.applies_to(fields):
        policy = None
        if run_for_calls is None:
            return None
    return ModelCallStep(fields, node_id, run_for_calls, policy)


class ToolCallStep(_Step):
    """The store's step in front of one tool call: for the tool executor.

    step = tool_call_step("search", {"query": "x"}, deterministic=tool.deterministic)
    memo = step.lookup() if step else Memo(False)
    if memo.hit: result = memo.value          # replayed, or memoized
    else: result = call the tool; step and step.keep(result)
    """

    kind = "tool"

    def lookup(self) -> Memo:
        memo = self._lookup()
        return Memo(True, decode(memo.value)) if memo.hit else memo

    def keep(self, result: Any) -> None:
        """Record the tool's result (record=True) and memoize it (deterministic tools)."""
        try:
            encoded = encode(result, node_id=self.node_id, port=None)
        except EncodeError as exc:
            raise EncodeError(
                f"tool {self.fields.get('tool')!r} returned a value that cannot be recorded "
                f"or memoized: {exc}",
                node_id=self.node_id,
                type_name=exc.type_name,
            ) from exc
        self._keep(encoded)


def tool_call_step(
    tool: str,
    arguments: Mapping[str, Any],
    *,
    deterministic: bool = False,
    node_id: str | None = None,
) -> ToolCallStep | None:
    """The step for one tool call, or None when nothing applies. `deterministic` tools
    (`@kaizen.tool(deterministic=True)`) are memoized in the run's cache store, else the
    default store. `node_id` defaults to the running node's."""
    run = active_calls.get()
    if run is not None and not (run.record or run.replay_of):
        run = None
    policy: CachePolicy | None = None
    if deterministic:
        outer = active_calls.get()
        policy = outer.cache if outer is not None and outer.cache is not None else CachePolicy()
    if run is None and policy is None:
        return None
    if node_id is None:
        context = current_call_context()
        node_id = context.node_id if context is not None else None
    fields = {"tool": tool, "arguments": json.loads(json.dumps(dict(arguments), default=_opaque))}
    return ToolCallStep(fields, node_id, run, policy)


def memoized(tool: str, arguments: Mapping[str, Any]) -> Memo:
    """A deterministic tool's remembered result for these arguments, if any."""
    step = tool_call_step(tool, arguments, deterministic=True)
    assert step is not None
    return step.lookup()


def remember(tool: str, arguments: Mapping[str, Any], result: Any) -> None:
    """Remember a deterministic tool's result for these arguments."""
    step = tool_call_step(tool, arguments, deterministic=True)
    assert step is not None
    step.keep(result)


process.register("store.calls", _lrus.clear)  # the cache's in-memory level; the store keeps it
