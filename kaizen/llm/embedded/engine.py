"""The embedded model's decode thread: `BatchEngine`, one model and one llama.cpp context serving
every concurrent call through llama-cpp-python's low-level bindings (``llama_batch``,
``llama_decode``, per-sequence KV cache, samplers). What it works on (requests, sequences, the
scheduler, the prefix cache, the thread tuner) is `kaizen.llm.embedded.batching`.

One step of the decode loop (`BatchEngine._step`):

1. `expire`: requests whose caller cancelled or whose deadline passed leave (their sequence is
   freed);
2. `admit`: waiting requests take free sequences, first come first served, while the context has
   room for their prompt plus ``max_tokens`` (otherwise they wait, and the wait shows as their
   queue time; cached prefixes are evicted first). A new sequence copies the longest matching
   prompt prefix from a cached or running sequence (``llama_memory_seq_cp``: shared cells, no
   recomputation) and only the rest of its prompt goes into the batch: continuous batching;
3. one ``llama_decode`` of the batch;
4. `sample` per sequence, through its own sampler chain (repetition penalties and DRY, then
   top-k, top-p, min-p, temperature, the draw; see `Sampling`); only the token kept is accepted
   into the chain's history. With a grammar, the token is drawn first without it and only that one
   token is checked against the grammar; only when the grammar rejects it is the grammar applied
   to the whole vocabulary (llama.cpp's own trick in ``common_sampler_sample``). Applying the
   grammar to all 49k tokens at every step is what made long constrained replies slow;
5. sequences that produced an end-of-generation token, a stop string or ``max_tokens`` finish:
   their future gets a `Decoded`, their prompt stays in the KV cache as a cached prefix.

The thread count of each ``llama_decode`` is chosen by `ThreadTuner` from measured step times:
on a machine whose other cores are busy, llama.cpp's threads wait for each other at every
operation and two threads can be several times slower than one.

Everything here runs on the decode thread except `BatchEngine.submit`, which only appends to the
queue under a lock and wakes the thread.
"""

from __future__ import annotations

import ctypes
import logging
import math
import random
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from kaizen.llm.embedded.batching import (
    MAX_SEQUENCES,
    PREFIX_SLOTS,
    ContextTooSmall,
    Decoded,
    DecodeTimeout,
    Request,
    Sampling,
    Scheduler,
    Sequence,
    ThreadTuner,
    best_prefix,
)
from kaizen.llm.embedded.weights import LocalModelError

__all__ = ["BatchEngine"]

DRY_WINDOW = 2048  # tokens DRY looks back over (the prompt too, with penalize_prompt)


class BatchEngine:
    """One model, one context, one decode thread (see the module docstring).

    `submit` a `Request` from any thread; wait on its future (``asyncio.wrap_future`` from a
    coroutine). Cancelling the future (or its deadline passing) frees the request's sequence.
    """

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int = 8192,
        n_threads: int = 2,
        max_sequences: int = MAX_SEQUENCES,
        prefix_slots: int = PREFIX_SLOTS,
        tune_threads: bool = True,
    ) -> None:
        import llama_cpp
        import numpy as np
        from llama_cpp import llama_chat_format

        self._ll = llama_cpp
        # llama-cpp-python prints llama.cpp's log unless its logger is set (Llama(verbose=False)
        # does the same): errors only.
        log = logging.getLogger("llama-cpp-python")
        if log.level == logging.NOTSET:
            log.setLevel(logging.ERROR)
        llama_cpp.llama_backend_init()
        model_params = llama_cpp.llama_model_default_params()
        self.model_path = model_path
        self._model = llama_cpp.llama_model_load_from_file(str(model_path).encode(), model_params)
        if not self._model:
            raise LocalModelError(
                f"llama.cpp could not load the local model {str(model_path)!r}: the file may be "
                "truncated or of a model architecture this llama.cpp does not know (upgrade "
                "llama-cpp-python, or use another GGUF)"
            )
        template = llama_cpp.llama_model_chat_template(self._model, None)
        if not template:
            llama_cpp.llama_model_free(self._model)
            raise LocalModelError(
                f"the local model {str(model_path)!r} has no chat template in its metadata "
                "(tokenizer.chat_template): use an instruct or chat model's GGUF, or add the "
                "template with llama.cpp's gguf_set_metadata / gguf-new-metadata"
            )
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_ctx
        params.n_seq_max = max_sequences + prefix_slots
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        params.kv_unified = True  # sequences share one pool of cells: prefixes are shared
        self._ctx = llama_cpp.llama_init_from_model(self._model, params)
        if not self._ctx:
            raise RuntimeError("llama.cpp could not create a context for the embedded model")
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self.n_ctx = int(llama_cpp.llama_n_ctx(self._ctx))
        self._batch = llama_cpp.llama_batch_init(self.n_ctx, 0, 1)
        self._tuner = ThreadTuner(range(1, n_threads + 1) if tune_threads else (n_threads,))
        self._threads = n_threads
        self._state = Scheduler(self.n_ctx, max_sequences, prefix_slots)
        self._piece = ctypes.create_string_buffer(256)
        self._candidates = (llama_cpp.llama_token_data * self.n_vocab)()
        self._candidate_view = np.ctypeslib.as_array(self._candidates)
        self._token_ids = np.arange(self.n_vocab, dtype=np.int32)
        self._np = np
        self._one = llama_cpp.llama_token_data()
        breakers = (b"\n", b":", b'"', b"*")  # llama.cpp's default DRY sequence breakers
        self._dry_breakers = (ctypes.c_char_p * len(breakers))(*breakers)

        eos = llama_cpp.llama_vocab_eos(self._vocab)
        bos = llama_cpp.llama_vocab_bos(self._vocab)
        self._formatter = llama_chat_format.Jinja2ChatFormatter(
            template=template.decode("utf-8"),
            eos_token=self._token_text(eos),
            bos_token=self._token_text(bos),
            stop_token_ids=[eos],
        )

        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._incoming: list[Request] = []
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="kaizen-local-decode", daemon=True)
        self._thread.start()

    # -- any thread ----------------------------------------------------------------------------
    def chat_prompt(self, messages: list[dict[str, Any]]) -> tuple[list[int], tuple[str, ...]]:
        """The prompt tokens and stop strings for chat `messages` (the model's chat template)."""
        result = self._formatter(messages=messages)
        stop = result.stop if isinstance(result.stop, list) else [result.stop]
        return (
            self.tokenize(result.prompt, add_bos=not result.added_special),
            tuple(s for s in stop if s),
        )

    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]:
        data = text.encode("utf-8")
        room = len(data) + 16
        tokens = (self._ll.llama_token * room)()
        n = self._ll.llama_tokenize(self._vocab, data, len(data), tokens, room, add_bos, True)
        return list(tokens[:n])

    def submit(self, request: Request) -> Future[Decoded]:
        """Queue `request` for decoding; its future resolves to a `Decoded` or raises
        `DecodeTimeout` / `ContextTooSmall`."""
        if len(request.prompt) >= self.n_ctx:
            raise ContextTooSmall(
                f"the prompt is {len(request.prompt)} tokens; the context of the local model "
                f"{self.model_path.name!r} holds {self.n_ctx}: shorten the prompt (fewer or "
                "shorter inputs, less memory context)"
            )
        request.max_tokens = max(1, min(request.max_tokens, self.n_ctx - len(request.prompt)))
        with self._wake:
            if self._closed:
                raise RuntimeError("the embedded model's decode thread has stopped")
            self._incoming.append(request)
            self._wake.notify()
        return request.future

    def close(self) -> None:
        """Stop the decode thread (pending requests fail) and free the context and model."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=30)
        ll = self._ll
        ll.llama_batch_free(self._batch)
        ll.llama_free(self._ctx)
        ll.llama_model_free(self._model)

    # -- the decode thread ---------------------------------------------------------------------
    def _loop(self) -> None:
        state = self._state
        while True:
            with self._wake:
                while not (self._closed or self._incoming or state.running or state.waiting):
                    self._wake.wait()
                if self._closed:
                    break
                state.waiting.extend(self._incoming)
                self._incoming.clear()
            try:
                self._step()
            except Exception as exc:  # a bug or a llama.cpp failure: fail what is in flight
                self._fail_all(exc)
        self._fail_all(RuntimeError("the embedded model was closed"))

    def _step(self) -> None:
        now = time.monotonic()
        self._expire(now)
        self._admit(now)
        if not self._fill_batch():
            return
        status = self._decode()
        if status == 1 and self._state.cached:  # no free cells: give up cached prefixes, retry
            self._evict_cache(len(self._state.cached))
            status = self._decode()
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status}")
        for seq in list(self._state.running.values()):
            if seq.logits_index >= 0:
                self._sample(seq)

    def _decode(self) -> int:
        """One ``llama_decode`` of the batch, with the thread count the tuner picks for it."""
        n_tokens = int(self._batch.n_tokens)
        threads = self._tuner.pick(n_tokens)
        if threads != self._threads:
            self._ll.llama_set_n_threads(self._ctx, threads, threads)
            self._threads = threads
        started = time.perf_counter()
        status = int(self._ll.llama_decode(self._ctx, self._batch))
        self._tuner.record(threads, n_tokens, time.perf_counter() - started)
        return status

    def _expire(self, now: float) -> None:
        state = self._state
        for request in list(state.waiting):
            if request.future.cancelled() or now >= request.deadline:
                state.waiting.remove(request)
                self._timed_out(request, now, queued=now - request.submitted)
        for seq in list(state.running.values()):
            request = seq.request
            if request.future.cancelled() or now >= request.deadline:
                self._release(seq, keep_prefix=False)
                self._timed_out(request, now, queued=seq.admitted - request.submitted)

    def _timed_out(self, request: Request, now: float, queued: float) -> None:
        if request.future.cancelled():
            return
        _resolve(
            request.future,
            error=DecodeTimeout(
                f"the embedded model did not finish within timeout={request.timeout:g} s "
                f"(of which {queued:.2f} s waiting for a free sequence); raise timeout=, "
                "lower max_tokens, or make fewer calls at once"
            ),
        )

    def _admit(self, now: float) -> None:
        state = self._state
        while state.waiting and len(state.running) < state.max_sequences:
            request = state.waiting[0]
            while request.cells > state.room() and state.cached:
                self._evict_cache(1)
            if request.cells > state.room():
                return  # the context is full: wait for a running sequence to finish
            if not state.free_ids:
                self._evict_cache(1)
            state.waiting.popleft()
            self._start(request, now)

    def _start(self, request: Request, now: float) -> None:
        state, ll = self._state, self._ll
        try:
            grammar = self._grammar(request.grammar)
        except ValueError as exc:  # this request's schema, not the engine: only it fails
            _resolve(request.future, error=exc)
            return
        seq_id = state.free_ids.pop(0)
        source, shared = best_prefix(state, request.prompt)
        ll.llama_memory_seq_rm(self._memory, seq_id, -1, -1)
        if source is not None:
            ll.llama_memory_seq_cp(self._memory, source, seq_id, 0, shared)
            if source in state.cached:
                state.cached.move_to_end(source)
        state.reserved += request.cells
        seq = Sequence(
            request=request,
            seq_id=seq_id,
            admitted=now,
            chain=self._chain(request.sampling, request.prompt),
            grammar=grammar,
            n_past=shared,
            pending=request.prompt[shared:],
            prefix_reused=shared,
        )
        state.running[seq_id] = seq

    def _chain(self, sampling: Sampling, prompt: list[int]) -> Any:
        """The sequence's sampler chain: repetition control, then the draw (see `Sampling`)."""
        ll = self._ll
        chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        if sampling.penalizes:
            penalties = ll.llama_sampler_init_penalties(
                self.n_vocab,
                sampling.repeat_last_n,
                sampling.repeat_penalty,
                sampling.frequency_penalty,
                sampling.presence_penalty,
            )
            ll.llama_sampler_chain_add(chain, penalties)
        if sampling.dry_multiplier > 0:
            dry = ll.llama_sampler_init_dry(
                self._vocab,
                sampling.dry_multiplier,
                sampling.dry_base,
                sampling.dry_allowed_length,
                DRY_WINDOW,
                self._dry_breakers,
                len(self._dry_breakers),
            )
            if sampling.penalize_prompt:  # DRY only: a token penalty would stop copying digits
                for token in prompt:
                    ll.llama_sampler_accept(dry, token)
            ll.llama_sampler_chain_add(chain, dry)
        if sampling.temperature <= 0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_greedy())
            return chain
        seed = sampling.seed if sampling.seed is not None else random.getrandbits(32)
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_k(sampling.top_k))
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_p(sampling.top_p, 1))
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_min_p(sampling.min_p, 1))
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_temp(sampling.temperature))
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        return chain

    def _grammar(self, gbnf: str | None) -> Any:
        if gbnf is None:
            return None
        grammar = self._ll.llama_sampler_init_grammar(self._vocab, gbnf.encode(), b"root")
        if not grammar:
            raise ValueError(
                "llama.cpp rejected the grammar made from the response schema (a `pattern` "
                "it cannot parse, such as one using \\s): simplify the schema"
            )
        return grammar

    def _fill_batch(self) -> bool:
        """Put every running sequence's pending tokens into the batch; False when empty."""
        batch, n = self._batch, 0
        for seq in self._state.running.values():
            seq.logits_index = -1
            for offset, token in enumerate(seq.pending):
                batch.token[n] = token
                batch.pos[n] = seq.n_past + offset
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq.seq_id
                batch.logits[n] = offset == len(seq.pending) - 1
                n += 1
            if seq.pending:
                seq.logits_index = n - 1
                seq.n_past += len(seq.pending)
                seq.pending = []
        batch.n_tokens = n
        return n > 0

    def _sample(self, seq: Sequence) -> None:
        ll = self._ll
        token = self._draw(seq, with_grammar=False)
        if seq.grammar is not None and not self._grammar_allows(seq.grammar, token):
            token = self._draw(seq, with_grammar=True)
        # Only the token kept is accepted: the repetition samplers' history is what was said.
        ll.llama_sampler_accept(seq.chain, token)
        if seq.grammar is not None:
            ll.llama_sampler_accept(seq.grammar, token)
        request = seq.request
        if ll.llama_vocab_is_eog(self._vocab, token):
            self._finish(seq, "stop")
            return
        seq.generated.append(token)
        n = ll.llama_token_to_piece(self._vocab, token, self._piece, len(self._piece), 0, False)
        seq.text += self._piece.raw[: max(n, 0)]
        if request.stop and self._cut_at_stop(seq):
            self._finish(seq, "stop")
        elif len(seq.generated) >= request.max_tokens:
            self._finish(seq, "length")
        else:
            seq.pending = [token]

    def _grammar_allows(self, grammar: Any, token: int) -> bool:
        one = self._one
        one.id, one.logit, one.p = token, 1.0, 0.0
        single = self._ll.llama_token_data_array(ctypes.pointer(one), 1, -1, False)
        self._ll.llama_sampler_apply(grammar, ctypes.byref(single))
        return math.isfinite(one.logit)

    def _draw(self, seq: Sequence, *, with_grammar: bool) -> int:
        """One token from the sequence's logits through its chain (nothing accepted). With the
        grammar, the grammar first masks the whole vocabulary: the slow pass, taken only when
        the token drawn without it was not allowed."""
        ll = self._ll
        logits = ll.llama_get_logits_ith(self._ctx, seq.logits_index)
        view = self._candidate_view
        view["id"] = self._token_ids
        view["logit"] = self._np.ctypeslib.as_array(logits, shape=(self.n_vocab,))
        view["p"] = 0.0
        array = ll.llama_token_data_array(self._candidates, self.n_vocab, -1, False)
        if with_grammar:
            ll.llama_sampler_apply(seq.grammar, ctypes.byref(array))
        ll.llama_sampler_apply(seq.chain, ctypes.byref(array))
        return int(array.data[array.selected].id)

    def _cut_at_stop(self, seq: Sequence) -> bool:
        text = seq.text.decode("utf-8", errors="ignore")
        for stop in seq.request.stop:
            at = text.find(stop)
            if at >= 0:
                seq.text = bytearray(text[:at].encode("utf-8"))
                return True
        return False

    def _finish(self, seq: Sequence, reason: str) -> None:
        request = seq.request
        decoded = Decoded(
            text=seq.text.decode("utf-8", errors="ignore"),
            finish_reason=reason,
            prompt_tokens=len(request.prompt),
            completion_tokens=len(seq.generated),
            queue_time=seq.admitted - request.submitted,
            prefix_reused=seq.prefix_reused,
        )
        self._release(seq, keep_prefix=True)
        _resolve(request.future, result=decoded)

    def _release(self, seq: Sequence, *, keep_prefix: bool) -> None:
        """Free `seq`: keep its prompt as a cached prefix (dropping what it generated), or not."""
        state, ll = self._state, self._ll
        del state.running[seq.seq_id]
        state.reserved -= seq.request.cells
        ll.llama_sampler_free(seq.chain)
        if seq.grammar is not None:
            ll.llama_sampler_free(seq.grammar)
        prompt = seq.request.prompt
        if keep_prefix and state.prefix_slots and seq.n_past >= len(prompt):
            if len(state.cached) >= state.prefix_slots:
                self._evict_cache(1)
            ll.llama_memory_seq_rm(self._memory, seq.seq_id, len(prompt), -1)
            state.cached[seq.seq_id] = list(prompt)
            state.reserved += len(prompt)
        else:
            ll.llama_memory_seq_rm(self._memory, seq.seq_id, -1, -1)
            state.free_ids.append(seq.seq_id)

    def _evict_cache(self, count: int) -> None:
        state = self._state
        for _ in range(min(count, len(state.cached))):
            seq_id, tokens = state.cached.popitem(last=False)
            self._ll.llama_memory_seq_rm(self._memory, seq_id, -1, -1)
            state.reserved -= len(tokens)
            state.free_ids.append(seq_id)

    def _fail_all(self, exc: BaseException) -> None:
        state = self._state
        for seq in list(state.running.values()):
            self._release(seq, keep_prefix=False)
            _resolve(seq.request.future, error=exc)
        with self._wake:
            state.waiting.extend(self._incoming)
            self._incoming.clear()
        while state.waiting:
            _resolve(state.waiting.popleft().future, error=exc)

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        text = self._ll.llama_vocab_get_text(self._vocab, token)
        return text.decode("utf-8", errors="ignore") if text else ""

    def stats(self) -> Mapping[str, int]:
        """Running, waiting and cached-prefix counts (a snapshot, for tests and benchmarks)."""
        state = self._state
        return {
            "running": len(state.running),
            "waiting": len(state.waiting) + len(self._incoming),
            "cached_prefixes": len(state.cached),
            "reserved_cells": state.reserved,
        }


def _resolve(
    future: Future[Decoded], *, result: Decoded | None = None, error: BaseException | None = None
) -> None:
    """Settle `future` unless its caller already cancelled it."""
    if future.done():
        return
    try:
        if error is not None:
            future.set_exception(error)
        elif result is not None:
            future.set_result(result)
    except Exception:  # cancelled between the check and the set: nobody is waiting
        pass
