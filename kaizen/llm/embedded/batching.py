"""Batched decoding for the embedded model: the scheduler's state and the rules it follows.

Concurrent calls to ``local/smollm2`` are decoded together, in one llama.cpp context, by one
decode thread (`kaizen.llm.embedded.engine.BatchEngine`): each step puts one new token of every
running sequence (and the prompt of any newly admitted one) into a single batch, so the model's
weights are read once per step for all of them. This module holds what that thread works on,
with no llama.cpp in it:

- `Request`: one call, as submitted: prompt tokens, sampling settings, grammar, ``max_tokens``,
  deadline, and the `concurrent.futures.Future` its caller waits on. Waits in `Scheduler.waiting`
  until it is admitted (its queue time ends there).
- `Sequence`: an admitted request: its sequence id in the KV cache, how many of its tokens the
  cache holds (``n_past``), its samplers, the tokens it generated, the token to feed next.
- `Scheduler`: ``waiting`` (a FIFO), ``running`` (seq id -> `Sequence`), the free seq ids, the
  prefix cache ``cached`` (seq id -> the prompt tokens that sequence holds in the KV cache, most
  recently used last), and ``reserved`` (KV cells promised to running sequences and cached
  prefixes).
- `best_prefix`: which cached or running sequence a new one copies its prompt's prefix from.
- `ThreadTuner`: the thread count of each ``llama_decode``, chosen from measured step times: on
  a machine whose other cores are busy, llama.cpp's threads wait for each other at every
  operation and two threads can be several times slower than one.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Sequence as Seq
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MAX_SEQUENCES",
    "MIN_SHARED_PREFIX",
    "PREFIX_SLOTS",
    "ContextTooSmall",
    "DecodeTimeout",
    "Decoded",
    "Request",
    "Sampling",
    "Scheduler",
    "Sequence",
    "ThreadTuner",
    "best_prefix",
    "common_prefix",
]

MAX_SEQUENCES = 8  # requests decoded at once; more wait in the queue
PREFIX_SLOTS = 4  # finished prompts kept in the KV cache for later requests that share them
MIN_SHARED_PREFIX = 16  # shorter common prefixes are recomputed: copying them saves nothing


class DecodeTimeout(TimeoutError):
    """A request did not finish before its deadline (queue time included)."""


class ContextTooSmall(ValueError):
    """A prompt does not fit in the embedded model's context at all."""


@dataclass(frozen=True, slots=True)
class Sampling:
    """How tokens are drawn: ``temperature`` 0 is greedy; ``seed`` None is random.

    Repetition control, per sequence (llama.cpp's samplers, applied before top-k): the
    penalties sampler (``repeat_penalty`` > 1 divides the logit of a token seen in the last
    ``repeat_last_n``; ``frequency_penalty`` / ``presence_penalty`` subtract per occurrence /
    once) and DRY ("don't repeat yourself": a token that would extend a sequence already said
    longer than ``dry_allowed_length`` tokens is penalised by ``dry_multiplier *
    dry_base ** (length - allowed)``; newlines, colons, quotes and asterisks break sequences,
    so JSON keys may repeat). With ``penalize_prompt`` the prompt counts as said for DRY: a
    reply that copies a long run of its prompt is penalised like one that loops (a tool call,
    which must copy its arguments, turns it off). The defaults switch all of it off; the
    embedded model's calls turn it on (`kaizen.llm.embedded.model`).
    """

    temperature: float = 0.2
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    seed: int | None = None
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    dry_multiplier: float = 0.0
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    penalize_prompt: bool = False

    @property
    def penalizes(self) -> bool:
        return self.repeat_penalty != 1.0 or bool(self.frequency_penalty or self.presence_penalty)


@dataclass(slots=True)
class Decoded:
    """A finished request: text, why it stopped (``stop`` or ``length``), token counts, and how
    long it waited for a sequence before its decoding began."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    queue_time: float
    prefix_reused: int = 0  # prompt tokens taken from the prefix cache instead of decoded


@dataclass(eq=False)
class Request:
    """One call, as submitted (see the module docstring)."""

    prompt: list[int]
    max_tokens: int
    sampling: Sampling = field(default_factory=Sampling)
    grammar: str | None = None  # GBNF text, root rule ``root``
    stop: tuple[str, ...] = ()
    timeout: float | None = None
    future: Future[Decoded] = field(default_factory=Future)
    submitted: float = field(default_factory=time.monotonic)

    @property
    def deadline(self) -> float:
        return math.inf if self.timeout is None else self.submitted + self.timeout

    @property
    def cells(self) -> int:
        """KV cells this request may need: its prompt and every token it may generate."""
        return len(self.prompt) + self.max_tokens


@dataclass(eq=False)
class Sequence:
    """An admitted request (see the module docstring)."""

    request: Request
    seq_id: int
    admitted: float
    chain: Any  # llama_sampler_p: penalties, DRY, top-k, top-p, min-p, temperature, draw
    grammar: Any  # llama_sampler_p or None
    n_past: int = 0  # tokens of this sequence in the KV cache
    pending: list[int] = field(default_factory=list)  # tokens to decode in the next batch
    generated: list[int] = field(default_factory=list)
    text: bytearray = field(default_factory=bytearray)
    logits_index: int = -1  # where this sequence's logits are in the last batch
    prefix_reused: int = 0


@dataclass
class Scheduler:
    """The decode thread's state (see the module docstring)."""

    n_ctx: int
    max_sequences: int = MAX_SEQUENCES
    prefix_slots: int = PREFIX_SLOTS
    waiting: deque[Request] = field(default_factory=deque)
    running: dict[int, Sequence] = field(default_factory=dict)
    cached: OrderedDict[int, list[int]] = field(default_factory=OrderedDict)
    reserved: int = 0

    def __post_init__(self) -> None:
        self.free_ids: list[int] = list(range(self.max_sequences + self.prefix_slots))

    def room(self) -> int:
        return self.n_ctx - self.reserved


class ThreadTuner:
    """Which thread count to decode the next batch with, from how fast recent steps were.

    Steps are compared by their size (tokens in the batch, in buckets): for each size and each
    choice it keeps a moving average of the step's seconds, uses the faster choice, and every
    `explore_every` steps of a size tries another choice once, so a change in the machine's load
    (another process taking a core) is noticed within a few dozen steps.
    """

    def __init__(self, choices: Seq[int], explore_every: int = 24, smoothing: float = 0.25):
        self.choices = tuple(dict.fromkeys(max(1, c) for c in choices))
        self.explore_every = explore_every
        self.smoothing = smoothing
        self.seconds: dict[tuple[int, int], float] = {}
        self.steps: dict[int, int] = {}

    @staticmethod
    def bucket(n_tokens: int) -> int:
        return n_tokens if n_tokens <= 8 else 8 + n_tokens.bit_length()

    def pick(self, n_tokens: int) -> int:
        size = self.bucket(n_tokens)
        count = self.steps.get(size, 0)
        self.steps[size] = count + 1
        unmeasured = [c for c in self.choices if (c, size) not in self.seconds]
        if unmeasured:
            return unmeasured[0]
        ranked = sorted(self.choices, key=lambda c: self.seconds[(c, size)])
        if len(ranked) > 1 and count % self.explore_every == self.explore_every - 1:
            return ranked[1]
        return ranked[0]

    def record(self, threads: int, n_tokens: int, seconds: float) -> None:
        key = (threads, self.bucket(n_tokens))
        previous = self.seconds.get(key)
        self.seconds[key] = (
            seconds if previous is None else previous + self.smoothing * (seconds - previous)
        )


def common_prefix(a: Seq[int], b: Seq[int]) -> int:
    """How many leading tokens `a` and `b` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def best_prefix(state: Scheduler, prompt: Seq[int]) -> tuple[int | None, int]:
    """The cached or running sequence sharing the longest prefix with `prompt`, and its length
    (at most ``len(prompt) - 1``: the last prompt token is always decoded, for its logits)."""
    best: tuple[int | None, int] = (None, 0)
    candidates = [(i, tokens) for i, tokens in state.cached.items()]
    candidates += [(s.seq_id, s.request.prompt[: s.n_past]) for s in state.running.values()]
    for seq_id, tokens in candidates:
        shared = min(common_prefix(tokens, prompt), len(prompt) - 1)
        if shared > best[1]:
            best = (seq_id, shared)
    return best if best[1] >= MIN_SHARED_PREFIX else (None, 0)
