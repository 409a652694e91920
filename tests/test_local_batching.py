"""Batched decoding of the embedded model (kaizen/llm/embedded/) and what it reports.

The scheduler's pure parts are tested directly; the engine is tested on the real model (skipped
without it, failed without it in CI, as in tests/test_local_model.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kaizen.llm import LOCAL_MODEL, acomplete, complete, local_model_installed
from kaizen.llm.embedded import model, weights
from kaizen.llm.embedded.batching import (
    MIN_SHARED_PREFIX,
    DecodeTimeout,
    Request,
    Scheduler,
    ThreadTuner,
    best_prefix,
    common_prefix,
)
from kaizen.llm.embedded.engine import BatchEngine
from kaizen.llm.embedded.schema import end_cleanly, normalise_json


@pytest.fixture
def embedded_model() -> None:
    """Skip without the embedded model, except in CI (see tests/test_local_model.py)."""
    if local_model_installed():
        return
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off"):
        pytest.fail("the embedded model is not installed, but CI is set: check `make setup`")
    pytest.skip("embedded model not installed (run `make setup`)")


needs_model = pytest.mark.usefixtures("embedded_model")
pytestmark = pytest.mark.timeout(600)

SCHEMA = {
    "type": "object",
    "properties": {"position": {"type": "string"}, "confidence": {"type": "number"}},
    "required": ["position", "confidence"],
    "additionalProperties": False,
}


def messages(topic: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You take a position on a topic. Reply with JSON only."},
        {"role": "user", "content": f"topic: {topic}"},
    ]


# -- pure parts ------------------------------------------------------------------------------
def test_the_thread_tuner_settles_on_the_faster_choice_and_notices_a_change() -> None:
    tuner = ThreadTuner((1, 2), explore_every=8)
    speed = {1: 0.010, 2: 0.030}  # two threads stalled: another process holds a core

    def run(steps: int) -> list[int]:
        picks = []
        for _ in range(steps):
            threads = tuner.pick(5)
            tuner.record(threads, 5, speed[threads])
            picks.append(threads)
        return picks

    picks = run(40)
    assert picks[:2] == [1, 2]  # each choice measured once
    assert picks[2:].count(1) > picks[2:].count(2) * 5  # then the faster, exploring now and then
    speed.update({1: 0.010, 2: 0.004})  # the other core is free again
    assert run(60)[-8:].count(2) >= 7
    assert tuner.pick(300) in (1, 2)  # a prompt-sized step is measured on its own


def test_weights_convert_once_into_the_cache_and_a_failure_leaves_no_file(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("llama_cpp")
    broken = tmp_path / "Broken.Q4_1.gguf"
    broken.write_bytes(b"not a gguf file")
    cache = tmp_path / "cache"
    assert weights.fast_weights(broken, cache) == broken  # falls back to the shipped file
    assert not any(p.suffix in (".gguf", ".part") for p in cache.glob("*"))
    monkeypatch.setenv("KAIZEN_LOCAL_WEIGHTS", "shipped")
    assert weights.fast_weights(broken, cache) == broken


@pytest.mark.local_model
@needs_model
def test_the_shipped_weights_are_converted_to_q8_once(tmp_path: Any) -> None:
    shipped = weights.gguf_path()
    assert shipped is not None
    converted = weights.fast_weights(shipped, tmp_path)
    assert converted.parent == tmp_path and ".Q8_0." in converted.name
    stamp = converted.stat().st_mtime_ns
    assert weights.fast_weights(shipped, tmp_path) == converted  # reused, not converted again
    assert converted.stat().st_mtime_ns == stamp
    assert list(tmp_path.glob("*.part")) == []


@given(st.lists(st.integers(0, 5)), st.lists(st.integers(0, 5)))
def test_common_prefix_is_the_longest_shared_start(a: list[int], b: list[int]) -> None:
    n = common_prefix(a, b)
    assert a[:n] == b[:n]
    assert n == min(len(a), len(b)) or a[n] != b[n]


def test_best_prefix_prefers_the_longest_match_and_keeps_one_token_to_decode() -> None:
    state = Scheduler(n_ctx=1000)
    prompt = list(range(40))
    state.cached[7] = [*range(30), 99]
    state.cached[8] = list(range(40))  # the very same prompt
    assert best_prefix(state, prompt) == (8, 39)  # the last token is decoded for its logits
    state.cached.clear()
    state.cached[3] = list(range(MIN_SHARED_PREFIX - 1))
    assert best_prefix(state, prompt) == (None, 0)  # too short to be worth copying


@given(st.lists(st.sampled_from(["word", "longer", "x", "end.", "growth,", "a"]), min_size=1))
def test_a_capped_answer_never_ends_inside_a_word(words: list[str]) -> None:
    text = " ".join(words)
    cut = end_cleanly(text)
    body = cut.removesuffix("…")
    assert text.startswith(body)
    if body != text and " " in text.rstrip():
        assert cut.endswith(("…", ".")) and text[len(body)] in " .,;:-"


def test_a_string_stopped_a_few_characters_short_of_its_cap_still_ends_cleanly() -> None:
    """The grammar admits a token only if all of it fits: a capped string may stop short."""
    import json

    def settled(value: str, cap: int) -> str:
        normalised = normalise_json(json.dumps({"a": value}), cap)
        assert normalised is not None
        return str(json.loads(normalised)["a"])

    near_the_cap = "word " * 19 + "grow"  # 99 characters, stopped inside a word
    assert settled(near_the_cap, 100).endswith("word…")
    assert settled(near_the_cap[:96] + ".", 100) == near_the_cap[:96] + "."  # ends a sentence
    assert settled("a short answer", 100) == "a short answer"  # far from the cap
    assert settled("twenty-one characters", 25) == "twenty-one characters"  # slack: a tenth


# -- the engine on the real model --------------------------------------------------------------
@pytest.fixture
def batching() -> Iterator[None]:
    saved = model.BATCHING
    model.BATCHING = True
    yield
    model.BATCHING = saved


@pytest.mark.local_model
@needs_model
@pytest.mark.usefixtures("batching")
def test_concurrent_calls_are_decoded_together_into_schema_valid_json() -> None:
    async def five() -> list[Any]:
        topics = ["Cities should ban cars", "Homework helps", "Tea beats coffee", "Cats", "Rain"]
        calls = [
            acomplete(messages(t), model=LOCAL_MODEL, response_schema=SCHEMA, max_tokens=96)
            for t in topics
        ]
        return await asyncio.gather(*calls)

    replies = asyncio.run(five())
    for reply in replies:
        jsonschema.validate(json.loads(reply.text), SCHEMA)
        assert reply.usage.completion_tokens > 0
        assert reply.queue_time >= 0.0
    assert model._engine().stats()["running"] == 0  # every sequence was freed


@pytest.mark.local_model
@needs_model
def test_the_serialised_path_still_answers_when_batching_is_off() -> None:
    saved = model.BATCHING
    model.BATCHING = False
    try:
        reply = complete(messages("Tea"), model=LOCAL_MODEL, response_schema=SCHEMA, max_tokens=96)
    finally:
        model.BATCHING = saved
    jsonschema.validate(json.loads(reply.text), SCHEMA)


@pytest.mark.local_model
@needs_model
def test_a_repeated_prompt_reuses_its_cached_prefix() -> None:
    engine = model._engine()
    prompt, stop = engine.chat_prompt(messages("Prefix caching is useful"))
    first = engine.submit(Request(list(prompt), 8, stop=stop)).result()
    second = engine.submit(Request(list(prompt), 8, stop=stop)).result()
    assert first.prompt_tokens == second.prompt_tokens == len(prompt)
    assert second.prefix_reused == len(prompt) - 1


@pytest.mark.local_model
@needs_model
def test_a_timeout_or_a_cancel_frees_the_sequence() -> None:
    engine = model._engine()
    prompt, _ = engine.chat_prompt([{"role": "user", "content": "Write a very long story."}])
    late = engine.submit(Request(list(prompt), 2000, timeout=0.05))
    with pytest.raises(DecodeTimeout, match=r"timeout=0\.05"):
        late.result()
    cancelled = engine.submit(Request(list(prompt), 2000))
    assert cancelled.cancel()
    with pytest.raises(CancelledError):
        cancelled.result()
    deadline = time.monotonic() + 60
    while (engine.stats()["running"] or engine.stats()["waiting"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.stats()["running"] == 0 and engine.stats()["waiting"] == 0


@pytest.mark.local_model
@needs_model
def test_a_request_waits_while_the_context_is_full_and_its_wait_is_reported() -> None:
    path = weights.installed_weights()
    engine = BatchEngine(path, n_ctx=512, n_threads=2, prefix_slots=0)
    try:
        prompt, stop = engine.chat_prompt(messages("Waiting for room"))
        size = 512 - len(prompt) - 8  # each request reserves most of the context
        first = engine.submit(Request(list(prompt), size, stop=stop))
        second = engine.submit(Request(list(prompt), size, stop=stop))
        a, b = first.result(), second.result()
        assert b.queue_time > a.queue_time  # it waited for the first to finish
        assert b.prefix_reused == 0  # nothing cached: prefix_slots=0
    finally:
        engine.close()
