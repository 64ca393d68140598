"""Ranking chunks for a query: BM25, dense, or both fused (the default).

* ``bm25``: the backend's lexical hits (score > 0) with the index's tokenizer (SudachiPy mode C by default).
* ``dense``: cosine between the query's embedding (e5's ``query:`` prefix) and every chunk vector, exact; in the
  index's centred space when it has one (:mod:`kogata.search.space`: both sides mean-centred, which stops a few
  "hub" chunks from coming back for everything).
* ``hybrid``: score fusion over the union of the top ``pool`` of each: ``w · bm25/max(bm25) + (1 − w) ·
  minmax(cosine)``, with ``w = keyword_weight`` (0.2: measured better than reciprocal-rank fusion on paraphrased
  queries, where embeddings alone beat RRF). Zero-score BM25 hits are dropped before fusing; a candidate missing
  from one list gets that list's floor (0 for BM25, the lowest pooled cosine for dense).

Ties break by chunk row, so rankings are deterministic and identical across backends. Every hit carries its raw
BM25 score and cosine besides the fused score; :func:`is_weak` decides whether the best hit is too weak to
answer from (no hit, or a best cosine below ``min_similarity``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kogata.core.errors import KogataError
from kogata.search.backend import SearchBackend
from kogata.search.chunk import Chunk
from kogata.search.space import RAW_MIN_SIMILARITY, DenseSpace, default_min_similarity
from kogata.search.tokenize import get_tokenizer
from kogata.search.vectors import embed_queries

MODES = ("hybrid", "bm25", "dense")
KEYWORD_WEIGHT = 0.2
POOL = 50
MIN_SIMILARITY = RAW_MIN_SIMILARITY  # raw e5 cosine of the best hit below which an answer is "not in the documents"


@dataclass
class Hit:
    chunk: Chunk
    score: float  # what the ranking used (fused score in hybrid mode)
    bm25: float | None = None  # raw BM25 score (None: not a lexical hit)
    similarity: float | None = None  # raw cosine (None: no embedder)
    rank: int = 0

    def to_dict(self, with_text: bool = True) -> dict[str, Any]:
        out = {"rank": self.rank, "chunk_id": self.chunk.chunk_id, "doc_id": self.chunk.doc_id, "source": self.chunk.source,
               "title": self.chunk.title, "score": round(self.score, 6),
               "bm25": None if self.bm25 is None else round(self.bm25, 6),
               "similarity": None if self.similarity is None else round(self.similarity, 6)}  # fmt: skip
        if with_text:
            out["text"] = self.chunk.text
        return out


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise KogataError(f"unknown search mode {mode!r}", f"use one of: {', '.join(MODES)}")
    return mode


class Retriever:
    """Queries one backend with one tokenizer and (optionally) one embedder runtime."""

    def __init__(self, backend: SearchBackend, tokenizer: str, embedder: Any = None, *, keyword_weight: float = KEYWORD_WEIGHT,
                 pool: int = POOL, space: DenseSpace | None = None):  # fmt: skip
        if not 0.0 <= keyword_weight <= 1.0:
            raise KogataError(f"keyword weight must be between 0 and 1, got {keyword_weight}", f"e.g. --keyword-weight {KEYWORD_WEIGHT}")
        self.backend = backend
        self.tokenizer_name = tokenizer
        self.tokenize = get_tokenizer(tokenizer)
        self.embedder = embedder
        self.keyword_weight = float(keyword_weight)
        self.pool = int(pool)
        self.space = space  # the index's dense space: query vectors are centred before the search (kogata.search.space)

    @property
    def min_similarity(self) -> float:
        """The default "not in the documents" bar for this index's similarities (centred or raw cosines)."""
        return default_min_similarity(self.space)

    @property
    def has_dense(self) -> bool:
        return self.embedder is not None and getattr(self.backend, "dim", 0) > 0

    def default_mode(self) -> str:
        return "hybrid" if self.has_dense else "bm25"

    def search(self, query: str, k: int = 5, mode: str | None = None, *, query_vector: np.ndarray | None = None) -> list[Hit]:
        return self.search_many([query], k, mode, query_vectors=None if query_vector is None else query_vector[None, :])[0]

    def search_many(self, queries: list[str], k: int = 5, mode: str | None = None, *,
                    query_vectors: np.ndarray | None = None) -> list[list[Hit]]:  # fmt: skip
        """Rankings for many queries (query embeddings computed in one batch)."""
        mode = check_mode(mode or self.default_mode())
        queries = [q.encode("utf-8", "replace").decode("utf-8") for q in queries]  # lone surrogates (JSON "\ud800") → "?"
        if k < 1:
            raise KogataError(f"-k must be at least 1, got {k}", "e.g. -k 5")
        if mode != "bm25" and not self.has_dense:
            raise KogataError(f"mode {mode!r} needs an embedder, and this index has none (built with --embedder none)",
                              "use --mode bm25, or rebuild the index with an embedder")  # fmt: skip
        if mode != "bm25" and query_vectors is None:
            query_vectors = embed_queries(self.embedder, list(queries))
        out = []
        for i, q in enumerate(queries):
            qv = query_vectors[i] if query_vectors is not None and mode != "bm25" else None
            out.append(self._rank(q, k, mode, qv))
        return out

    def _rank(self, query: str, k: int, mode: str, qv: np.ndarray | None) -> list[Hit]:
        pool = max(self.pool, k)
        lexical = self.backend.lexical(self.tokenize(query), pool if mode != "dense" else 0) if mode != "dense" else []
        if qv is not None and self.space is not None:
            qv = self.space.query(qv)
        dense = self.backend.dense(qv, pool) if qv is not None else []
        bm = dict(lexical)
        cos = dict(dense)
        if mode == "bm25":
            ranked = [(row, s) for row, s in lexical]
        elif mode == "dense":
            ranked = [(row, s) for row, s in dense]
        else:
            ranked = self._fuse(lexical, dense)
        hits = []
        for rank, (row, score) in enumerate(ranked[:k], 1):
            hits.append(Hit(self.backend.chunk(row), float(score), bm.get(row), cos.get(row), rank))
        return hits

    def _fuse(self, lexical: list[tuple[int, float]], dense: list[tuple[int, float]]) -> list[tuple[int, float]]:
        w = self.keyword_weight
        bm = dict(lexical)
        cos = dict(dense)
        top_bm = max(bm.values(), default=0.0)
        lo, hi = (min(cos.values()), max(cos.values())) if cos else (0.0, 0.0)
        span = hi - lo
        fused = []
        for row in set(bm) | set(cos):
            b = bm.get(row, 0.0) / top_bm if top_bm > 0 else 0.0
            c = cos.get(row, lo)
            d = (c - lo) / span if span > 0 else (1.0 if cos else 0.0)
            fused.append((row, w * b + (1 - w) * d))
        fused.sort(key=lambda t: (-t[1], t[0]))
        return fused


def is_weak(hits: list[Hit], min_similarity: float = MIN_SIMILARITY) -> bool:
    """True when there is nothing to answer from: no hit, or (with an embedder) the best cosine is below the bar
    (pass the retriever's :attr:`Retriever.min_similarity` for an index searched in a centred space)."""
    if not hits:
        return True
    sims = [h.similarity for h in hits if h.similarity is not None]
    if sims:
        return max(sims) < min_similarity
    return all(not h.bm25 for h in hits)
