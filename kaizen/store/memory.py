"""Agent memory: what an agent remembers across executions and processes (`Memory`).

`agent.enable_memory(provider=..., path=None, session=None, max_history=1000, ttl=None)` gives
an agent a `Memory` in namespace = the agent's name (and `session`, when given). Each successful
execution is recorded as one memory: its inputs and outputs as ``name: value`` lines. Before
each execution the most relevant memories for its inputs go into the prompt as this block,
appended to the system message (`memory_block`):

    Relevant earlier interactions (from memory, most relevant first):
    - task: Remember: User prefers technical details | result: Noted.

Relevance (`Memory.search`) fuses rankings with reciprocal rank fusion (each list adds
1 / (60 + rank)): SQLite FTS5 BM25 on the words of the query, recency (weighted half, so a
matching memory beats a merely recent one, and the latest interactions still come along when no
word matches), and for ``"vector_db"`` the cosine similarity of embeddings, scored in numpy
(this platform's sqlite3 cannot load vector extensions). Embeddings come from wordllama (extra
``vector``; its weights ship in the wheel, loaded offline) or any litellm embedding model
(`embedding_model="openai/text-embedding-3-small"`).

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
    "Memory",
    "MemoryItem",
    "MemoryProvider",
    "memory_block",
    "remembering",
    "with_memory_block",
]

MemoryProvider = Literal["sqlite", "memory", "vector_db"]
MEMORY_HEADER = "Relevant earlier interactions (from memory, most relevant first):"
_RRF = 60  # reciprocal rank fusion constant
_CANDIDATES = 50  # per ranking
_POOL = 4 * _CANDIDATES  # best FTS matches ranked per try, before keeping this scope's
# words that carry no meaning for search (dropped from a query while others remain)
_STOPWORDS = frozenset(
    ["a", "about", "an", "and", "are", "as", "at", "be", "but", "by", "can", "do", "for", "from",
     "has", "have", "how", "i", "in", "is", "it", "its", "me", "my", "no", "not", "of", "on",
     "or", "our", "so", "than", "that", "the", "their", "then", "there", "these", "they", "this",
     "to", "us", "was", "we", "were", "what", "when", "where", "which", "who", "why", "will",
     "with", "you", "your"]
)  # fmt: skip
_RECENCY_WEIGHT = 0.5
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
                cursor = db.execute(
                    "INSERT INTO memories (namespace, session, text, created, embedding)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (self.namespace, self.session, text, now, embedding),
                )
                memory_id = int(cursor.lastrowid or 0)
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
        """The `k` memories most relevant to `query`, best first (see the module docstring)."""
        scope = (self.namespace, self.session, *self._fresh_args())
        fresh = self._fresh_clause()
        scores: dict[int, float] = {}
        terms = self._informative(_WORD.findall(query.lower()))
        if terms:
            _fuse(scores, self._matching(terms, scope, fresh), 1.0)
        recent = self.store.read(
            "SELECT id FROM memories WHERE namespace = ? AND session = ?"
            + fresh
            + " ORDER BY created DESC, id DESC LIMIT ?",
            (*scope, _CANDIDATES),
        )
        _fuse(scores, [r[0] for r in recent], _RECENCY_WEIGHT)
        if self._embedder is not None and query.strip():
            _fuse(scores, self._nearest(query, _CANDIDATES), 1.0)
        best = sorted(scores.items(), key=lambda item: -item[1])[:k]
        if not best:
            return []
        marks = ",".join("?" * len(best))
        rows = {
            r[0]: r
            for r in self.store.read(
                f"SELECT id, text, created FROM memories WHERE id IN ({marks})",
                tuple(i for i, _ in best),
            )
        }
        return [
            MemoryItem(i, rows[i][1], rows[i][2], round(score, 6)) for i, score in best if i in rows
        ]

    def _informative(self, words: list[str]) -> list[str]:
        """The words of a query worth searching for: not stopwords, and not in more than half
        of all memories (BM25 gives such a word no weight, yet matching it means ranking
        nearly every memory). When no word is left, the rarest one."""
        words = list(dict.fromkeys(words))
        candidates = [w for w in words if w not in _STOPWORDS] or words
        if not candidates:
            return []
        marks = ",".join("?" * len(candidates))
        frequency = dict(
            self.store.read(
                f"SELECT term, doc FROM temp.memories_vocab WHERE term IN ({marks})",
                tuple(candidates),
            )
        )
        if not frequency:
            return []  # no memory holds any of them
        total = self.store.read("SELECT count(*) FROM memories")[0][0]
        # a word the index spells differently (accents, underscores) is not found: kept
        informative = [w for w in candidates if frequency.get(w, 0) * 2 <= total]
        return informative or [min(candidates, key=lambda w: frequency.get(w, 0))]

    def _matching(self, terms: list[str], scope: tuple[Any, ...], fresh: str) -> list[int]:
        """This scope's best BM25 matches for any of `terms`, best first. FTS5 ranks its best
        `pool` matches across every scope (ORDER BY rank LIMIT is its fast path); when other
        scopes crowd this one's out of them, the pool grows until it holds enough or all."""
        match = " OR ".join(f'"{w}"' for w in terms)
        pool = _POOL
        while True:
            rows = self.store.read(
                "SELECT f.rowid, m.id IS NOT NULL FROM (SELECT rowid, rank FROM memories_fts"
                " WHERE memories_fts MATCH ? ORDER BY rank LIMIT ?) AS f"
                " LEFT JOIN memories m ON m.id = f.rowid AND m.namespace = ? AND m.session = ?"
                + fresh.replace("created", "m.created")
                + " ORDER BY f.rank",
                (match, pool, *scope),
            )
            ranked = [memory_id for memory_id, in_scope in rows if in_scope][:_CANDIDATES]
            if len(ranked) == _CANDIDATES or len(rows) < pool:
                return ranked
            pool *= 8

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
        """The prompt block for an execution with `inputs` (None when nothing is remembered)."""
        query = " ".join(str(v) for v in inputs.values() if v not in (None, "", {}, []))
        return memory_block(self.search(query, self.k))

    async def ablock_for(self, inputs: Mapping[str, Any]) -> str | None:
        return await asyncio.to_thread(self.block_for, inputs)

    async def arecord(self, inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> int | None:
        return await asyncio.to_thread(self.record, inputs, outputs)


def memory_block(items: Sequence[MemoryItem]) -> str | None:
    """The documented block (see the module docstring), or None for no memories."""
    if not items:
        return None
    lines = [MEMORY_HEADER]
    lines += ["- " + " | ".join(item.text.splitlines()) for item in items]
    return "\n".join(lines)


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


def _fuse(scores: dict[int, float], ranked: Sequence[int], weight: float) -> None:
    for rank, memory_id in enumerate(ranked):
        scores[memory_id] = scores.get(memory_id, 0.0) + weight / (_RRF + rank)


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
