"""Agent memory: what an agent remembers across executions and processes (`Memory`).

`agent.enable_memory(provider=..., path=None, session=None, max_history=1000, ttl=None)` gives
an agent a `Memory` in namespace = the agent's name (and `session`, when given). Each successful
execution is recorded as one memory: its inputs and outputs as ``name: value`` lines. Before
each execution the most relevant memories for its inputs go into the prompt as this block,
appended to the system message (`memory_block`):

    Relevant earlier interactions (from memory, most relevant first):
    - task: Remember: User prefers technical details | result: Noted.
    Other recent interactions (from memory, newest first; none matched this request):
    - task: What is the capital of France? | result: Paris.

Relevance (`Memory.search`): only memories sharing an informative word with the query count (words
are stemmed: the store's text index spells words by their stems, and the query's words are looked
up as that index spells them), and for ``"vector_db"`` those whose embeddings are near it. Their
rankings fuse by reciprocal rank fusion (each list adds 1 / (60 + rank)): the text index's ranking
(SQLite FTS5 BM25 with the porter tokenizer; on a Postgres store, each matched word's BM25 inverse
document frequency times ``ts_rank`` over an English ``tsvector``) and the cosine similarity of
embeddings, scored in numpy (stored with the rows: this platform's sqlite3 cannot load vector
extensions and the Postgres here has no pgvector); recency orders memories of equal relevance and
never makes one relevant. When fewer than `k` are relevant, the block adds the newest others under
their own heading. Embeddings come from wordllama (extra ``vector``; its weights ship in the wheel,
loaded offline) or any litellm embedding model (`embedding_model="openai/text-embedding-3-small"`).

Providers: ``"sqlite"`` and ``"vector_db"`` persist in the store (`path`, else the default
store); ``"memory"`` lives in this process only. Junk is kept out: failed executions are not
recorded, and a memory identical to one already kept only refreshes its time. Pruning: at most
`max_history` memories per namespace and session (the oldest go), none older than `ttl`.
"""

from __future__ import annotations

import asyncio
import datetime
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from kaizen.errors import ConfigError
from kaizen.flow import Call, Flow
from kaizen.logs import host_logging_kept
from kaizen.store.db import Store, StorePath

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "MEMORY_HEADER",
    "RECENT_HEADER",
    "Memory",
    "MemoryItem",
    "MemoryProvider",
    "memory_block",
    "remembering",
    "with_memory_block",
]

MemoryProvider = Literal["sqlite", "memory", "vector_db"]
MEMORY_HEADER = "Relevant earlier interactions (from memory, most relevant first):"
RECENT_HEADER = "Other recent interactions (from memory, newest first; none matched this request):"
_RRF = 60  # reciprocal rank fusion constant
_CANDIDATES = 50  # per ranking
# words that carry no meaning for search (dropped from a query while others remain)
_STOPWORDS = frozenset(
    ["a", "about", "an", "and", "are", "as", "at", "be", "but", "by", "can", "do", "for", "from",
     "has", "have", "how", "i", "in", "is", "it", "its", "me", "my", "no", "not", "of", "on",
     "or", "our", "so", "than", "that", "the", "their", "then", "there", "these", "they", "this",
     "to", "us", "was", "we", "were", "what", "when", "where", "which", "who", "why", "will",
     "with", "you", "your", "should", "would", "could", "does", "did", "been", "had", "if"]
)  # fmt: skip
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class MemoryItem:
    """One memory: its text, when it was kept (time.time()), and its search score."""

    id: int
    text: str
    created: float
    score: float = 0.0


class Memory:
    """The memories of one namespace (an agent) and session (see the module docstring)."""

    def __init__(
        self,
        namespace: str,
        *,
        provider: MemoryProvider = "sqlite",
        path: StorePath | Store | None = None,
        session: str | None = None,
        max_history: int = 1000,
        ttl: float | datetime.timedelta | None = None,
        embedding_model: str | None = None,
        k: int = 5,
    ) -> None:
        if provider not in ("sqlite", "memory", "vector_db"):
            raise ConfigError(
                f"memory provider must be 'sqlite', 'memory' or 'vector_db', got {provider!r}"
            )
        if not isinstance(max_history, int) or max_history < 1:
            raise ConfigError(f"max_history must be a positive int, got {max_history!r}")
        if isinstance(ttl, datetime.timedelta):
            ttl = ttl.total_seconds()
        if ttl is not None and ttl <= 0:
            raise ConfigError(f"ttl must be a positive number of seconds, got {ttl!r}")
        self.namespace = namespace
        self.provider = provider
        self.session = session or ""
        self.max_history = max_history
        self.ttl = ttl
        self.k = k
        self.store = Store(":memory:") if provider == "memory" else Store.open(path)
        self._embedder: Embedder | None = None
        if provider == "vector_db":
            self._embedder = embedder_for(embedding_model)
        self._vectors: tuple[list[int], np.ndarray] | None = None  # cached (ids, matrix)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"Memory({self.namespace!r}, provider={self.provider!r}, session={self.session!r}, "
            f"store={self.store.path!r})"
        )

    # -- writing ---------------------------------------------------------------------------------

    def add(self, text: str) -> int:
        """Keep `text`; returns its id. The same text again only refreshes its time."""
        text = text.strip()
        if not text:
            raise ValueError("a memory needs some text")
        embedding = None
        if self._embedder is not None:
            embedding = self._embedder.embed([text])[0].astype("float32").tobytes()
        now = time.time()
        with self.store.write() as db:
            row = db.execute(
                "SELECT id FROM memories WHERE namespace = ? AND session = ? AND text = ?",
                (self.namespace, self.session, text),
            ).fetchone()
            if row is not None:
                db.execute("UPDATE memories SET created = ? WHERE id = ?", (now, row[0]))
                memory_id = int(row[0])
            else:
                memory_id = int(
                    db.execute(
                        "INSERT INTO memories (namespace, session, text, created, embedding)"
                        " VALUES (?, ?, ?, ?, ?) RETURNING id",
                        (self.namespace, self.session, text, now, embedding),
                    ).fetchone()[0]
                )
            pruned = self._prune(db, now)
        if pruned:
            self._vectors = None
        return memory_id

    def record(self, inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> int | None:
        """Keep one execution: its inputs and outputs (empty values left out)."""
        text = "\n".join(_lines(inputs) + _lines(outputs))
        return self.add(text) if text else None

    def clear(self) -> int:
        """Forget every memory of this namespace and session; returns how many."""
        with self.store.write() as db:
            count = db.execute(
                "DELETE FROM memories WHERE namespace = ? AND session = ?",
                (self.namespace, self.session),
            ).rowcount
        self._vectors = None
        return int(count)

    def _prune(self, db: Any, now: float) -> int:
        scope = (self.namespace, self.session)
        removed = 0
        if self.ttl is not None:
            removed += db.execute(
                "DELETE FROM memories WHERE namespace = ? AND session = ? AND created < ?",
                (*scope, now - self.ttl),
            ).rowcount
        removed += db.execute(
            "DELETE FROM memories WHERE namespace = ? AND session = ? AND id NOT IN"
            " (SELECT id FROM memories WHERE namespace = ? AND session = ?"
            "  ORDER BY created DESC, id DESC LIMIT ?)",
            (*scope, *scope, self.max_history),
        ).rowcount
        return int(removed)

    # -- reading ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        rows = self.store.read(
            "SELECT count(*) FROM memories WHERE namespace = ? AND session = ?"
            + self._fresh_clause(),
            (self.namespace, self.session, *self._fresh_args()),
        )
        return int(rows[0][0])

    def search(self, query: str, k: int = 5) -> list[MemoryItem]:
        """The `k` memories most relevant to `query`, best first: only memories that share an
        informative word with it (in any form: words are stemmed), or, for ``"vector_db"``,
        whose embeddings are near; none when nothing matches (see the module docstring)."""
        scope = (self.namespace, self.session, *self._fresh_args())
        scores: dict[int, float] = {}
        terms = self._informative(_WORD.findall(query.lower()))
        if terms:
            _fuse(scores, self._matching(terms, scope))
        if self._embedder is not None and query.strip():
            _fuse(scores, [(i, float(n)) for n, i in enumerate(self._nearest(query, _CANDIDATES))])
        if not scores:
            return []
        marks = ",".join("?" * len(scores))
        rows = self.store.read(
            f"SELECT id, text, created FROM memories WHERE id IN ({marks})", tuple(scores)
        )
        # relevance first; between equally relevant memories, the newest first
        rows.sort(key=lambda row: (-scores[row[0]], -row[2], -row[0]))
        return [MemoryItem(i, text, created, round(scores[i], 6)) for i, text, created in rows[:k]]

    def recent(self, k: int = 5) -> list[MemoryItem]:
        """The `k` newest memories, newest first, whatever they say."""
        rows = self.store.read(
            "SELECT id, text, created FROM memories WHERE namespace = ? AND session = ?"
            + self._fresh_clause()
            + " ORDER BY created DESC, id DESC LIMIT ?",
            (self.namespace, self.session, *self._fresh_args(), k),
        )
        return [MemoryItem(i, text, created) for i, text, created in rows]

    def _informative(self, words: list[str]) -> list[str]:
        """The words of a query worth searching for: not stopwords, found in some memory (in
        any form: compared by the index's stems), and not in more than half of all memories
        (BM25 gives such a word no weight, yet matching it means ranking nearly every memory;
        when every word found is that common, the rarest one stays)."""
        candidates = [w for w in dict.fromkeys(words) if w not in _STOPWORDS]
        if not candidates:
            return []
        stems = self._stems(candidates)
        every = sorted({stem for word in candidates for stem in stems.get(word, ())})
        if not every:
            return []
        frequency = self.store.memory_frequencies(every)
        # how many memories hold a word: those holding its rarest stem, at most
        held = {
            word: min(frequency.get(stem, 0) for stem in stems[word])
            for word in candidates
            if stems.get(word)
        }
        found = [word for word, count in held.items() if count]
        if not found:
            return []  # no memory holds any of them
        total = self.store.read("SELECT count(*) FROM memories")[0][0]
        informative = [word for word in found if held[word] * 2 <= total]
        return informative or [min(found, key=lambda word: held[word])]

    def _stems(self, words: list[str]) -> dict[str, tuple[str, ...]]:
        """Each word as the memory index spells it (its stems)."""
        return self.store.memory_stems(words)

    def _matching(self, terms: list[str], scope: tuple[Any, ...]) -> list[tuple[int, float]]:
        """This scope's best matches for any of `terms`, best first (the store's text index:
        BM25 on SQLite, ``ts_rank`` on Postgres)."""
        namespace, session, *fresh = scope
        since = fresh[0] if fresh else None
        return self.store.memory_matches(terms, namespace, session, since, _CANDIDATES)

    def _fresh_clause(self) -> str:
        return " AND created >= ?" if self.ttl is not None else ""

    def _fresh_args(self) -> tuple[float, ...]:
        return (time.time() - self.ttl,) if self.ttl is not None else ()

    def _nearest(self, query: str, n: int) -> list[int]:
        import numpy as np

        assert self._embedder is not None
        ids, matrix = self._matrix()
        if not ids:
            return []
        vector = self._embedder.embed([query])[0].astype("float32")
        vector /= np.linalg.norm(vector) or 1.0
        # einsum, not `matrix @ vector`: BLAS spreads a product this small over every core
        # and, on a busy machine, takes several times longer than one core alone
        similarity = np.einsum("ij,j->i", matrix, vector)
        if len(ids) > n:
            top = np.argpartition(-similarity, n)[:n]
            top = top[np.argsort(-similarity[top])]
        else:
            top = np.argsort(-similarity)
        return [ids[i] for i in top]

    def _matrix(self) -> tuple[list[int], np.ndarray]:
        """Every embedding of the scope, normalised: loaded once, then only new rows."""
        import numpy as np

        with self._lock:
            ids, matrix = self._vectors or ([], np.zeros((0, 0), dtype="float32"))
            last = ids[-1] if ids else 0
            rows = self.store.read(
                "SELECT id, embedding FROM memories WHERE namespace = ? AND session = ?"
                " AND id > ? AND embedding IS NOT NULL ORDER BY id",
                (self.namespace, self.session, last),
            )
            if rows:
                new = np.stack([np.frombuffer(r[1], dtype="float32") for r in rows])
                new /= np.maximum(np.linalg.norm(new, axis=1, keepdims=True), 1e-12)
                matrix = new if not ids else np.vstack([matrix, new])
                ids = [*ids, *(int(r[0]) for r in rows)]
                self._vectors = (ids, matrix)
            return ids, matrix

    # -- the prompt block ------------------------------------------------------------------------

    def block_for(self, inputs: Mapping[str, Any]) -> str | None:
        """The prompt block for an execution with `inputs` (None when nothing is remembered):
        the memories relevant to them, then, up to `k` in all, the newest others, each under
        its own heading."""
        query = " ".join(str(v) for v in inputs.values() if v not in (None, "", {}, []))
        relevant = self.search(query, self.k)
        shown = {item.id for item in relevant}
        recent = [item for item in self.recent(self.k) if item.id not in shown]
        return memory_block(relevant, recent[: self.k - len(relevant)])

    async def ablock_for(self, inputs: Mapping[str, Any]) -> str | None:
        return await asyncio.to_thread(self.block_for, inputs)

    async def arecord(self, inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> int | None:
        return await asyncio.to_thread(self.record, inputs, outputs)


def memory_block(items: Sequence[MemoryItem], recent: Sequence[MemoryItem] = ()) -> str | None:
    """The documented block (see the module docstring), or None for no memories: `items`
    (relevant) under `MEMORY_HEADER`, `recent` (matched no word) under `RECENT_HEADER`."""
    lines: list[str] = []
    for header, group in ((MEMORY_HEADER, items), (RECENT_HEADER, recent)):
        if group:
            lines.append(header)
            lines += ["- " + " | ".join(item.text.splitlines()) for item in group]
    return "\n".join(lines) or None


def with_memory_block(messages: list[dict[str, Any]], block: str | None) -> list[dict[str, Any]]:
    """`messages` with `block` appended to the system message (or as one, when none)."""
    if not block:
        return messages
    if messages and messages[0].get("role") == "system":
        first = {**messages[0], "content": f"{messages[0].get('content') or ''}\n\n{block}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": block}, *messages]


def remembering(
    memory: Memory,
    inputs: Mapping[str, Any],
    execution: Callable[[str | None], Flow[dict[str, Any]]],
) -> Flow[dict[str, Any]]:
    """The flow of an execution with memory: find the block, run `execution(block)`, record
    the inputs and outputs once it succeeded."""
    block = yield Call(memory.block_for, memory.ablock_for, {"inputs": inputs})
    outputs = yield from execution(block)
    yield Call(memory.record, memory.arecord, {"inputs": inputs, "outputs": outputs})
    return outputs


def _lines(values: Mapping[str, Any]) -> list[str]:
    return [f"{k}: {v}" for k, v in values.items() if v not in (None, "", {}, [])]


def _fuse(scores: dict[int, float], ranked: Sequence[tuple[int, float]]) -> None:
    """Add one ranking (memory ids with their score, best first) by reciprocal rank fusion;
    memories with equal scores share a place, so recency can order them."""
    place, previous = -1, None
    for number, (memory_id, score) in enumerate(ranked):
        if score != previous:
            place, previous = number, score
        scores[memory_id] = scores.get(memory_id, 0.0) + 1.0 / (_RRF + place)


# -- embeddings ----------------------------------------------------------------------------------


class Embedder:
    """Turns texts into vectors (rows of a float32 array)."""

    def embed(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError


class WordLlamaEmbedder(Embedder):
    """wordllama's 256-dimension model, from the weights in its wheel (never downloaded)."""

    _shared: Any = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        with self._lock:
            if WordLlamaEmbedder._shared is None:
                # wordllama calls logging.basicConfig(level=INFO) when imported
                with host_logging_kept():
                    WordLlamaEmbedder._shared = _load_wordllama()
        self.model = WordLlamaEmbedder._shared

    def embed(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        return np.asarray(self.model.embed(texts), dtype="float32")


def _load_wordllama() -> Any:
    try:
        import wordllama
    except ImportError:
        raise ConfigError(
            "memory provider 'vector_db' embeds offline with wordllama: install the extra "
            "(pip install 'kaizen[vector]'), or give embedding_model= a litellm embedding model"
        ) from None
    from pathlib import Path

    # the weights and tokenizer ship inside the package: point its cache there
    package = Path(wordllama.__file__).parent
    return wordllama.WordLlama.load(cache_dir=package, disable_download=True)


class LitellmEmbedder(Embedder):
    """Any litellm embedding model (a provider call per `embed`)."""

    def __init__(self, model: str) -> None:
        self.model = model

    def embed(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        from kaizen.llm.litellm_adapter import embedding

        return np.asarray(embedding(self.model, texts), dtype="float32")


def embedder_for(model: str | None) -> Embedder:
    return WordLlamaEmbedder() if model is None else LitellmEmbedder(model)
