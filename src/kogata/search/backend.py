"""Where chunks, their BM25 tokens and their vectors live: the backend interface and the embedded backend.

A backend stores chunks and answers two primitive queries; fusion and everything above it happens in Python
(:mod:`kogata.search.retrieve`), so every backend ranks identically:

* ``upsert(chunks, tokens, vectors)`` / ``delete(chunk_ids)``;
* ``lexical(query_tokens, k)`` → the ``k`` best ``(row, bm25 score)`` with score > 0 (zero-score hits are
  dropped: bm25s returns them in arbitrary order);
* ``dense(query_vector, k)`` → the ``k`` best ``(row, cosine)``, exact;
* ``chunk(row)`` → the stored :class:`~kogata.search.chunk.Chunk`.

:class:`EmbeddedBackend` (the default) keeps everything in memory: BM25 through ``bm25s`` over the stored
tokens, vectors as one float32 matrix searched exactly with numpy (a matrix-vector product). The matrix is
kept column-major in memory: OpenBLAS's sgemv then streams it twice as fast as row-major (100k × 384 on one
thread: 7.5 vs 14.7 ms, measured here). It is saved as one SQLite file (``chunks.sqlite``: documents, chunks, tokens) plus ``vectors.npy``
(read with ``allow_pickle=False``), the files of a ``search-index`` artifact. The PostgreSQL + pgvector backend
(:mod:`kogata.search.backend_pg`) implements the same methods against tables and computes the same BM25 (the
parameters below) in SQL; ``tests/unit/test_search_backend_contract.py`` holds both to identical results.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from kogata.core.errors import KogataError
from kogata.search.chunk import Chunk

CHUNKS_FILE = "chunks.sqlite"
VECTORS_FILE = "vectors.npy"
# BM25 as every backend computes it (bm25s's defaults, spelled out so the PostgreSQL backend's SQL can match them)
BM25_METHOD = "lucene"  # idf ln(1 + (N - df + 0.5) / (df + 0.5)); term weight tf / (tf + k1 (1 - b + b dl / avgdl))
BM25_K1 = 1.5
BM25_B = 0.75


class SearchBackend(Protocol):
    dim: int  # vector size; 0 for a BM25-only index

    def upsert(self, chunks: Sequence[Chunk], tokens: Sequence[list[str]], vectors: np.ndarray | None) -> None: ...

    def delete(self, chunk_ids: Iterable[str]) -> None: ...

    def lexical(self, query_tokens: list[str], k: int) -> list[tuple[int, float]]: ...

    def dense(self, query_vector: np.ndarray, k: int) -> list[tuple[int, float]]: ...

    def chunk(self, row: int) -> Chunk: ...

    def rows(self) -> Iterator[tuple[Chunk, list[str], np.ndarray | None]]: ...  # (chunk, tokens, vector) in row order

    def close(self) -> None: ...

    def __len__(self) -> int: ...


def _column_major(vectors: np.ndarray) -> np.ndarray:
    """float32, Fortran order: how the embedded backend holds its vectors (see the module docstring)."""
    return np.asfortranarray(vectors, dtype=np.float32)


def _top(scores: np.ndarray, k: int, *, positive: bool) -> list[tuple[int, float]]:
    if scores.size == 0 or k <= 0:
        return []
    if positive:
        idx = np.flatnonzero(scores > 0)
        if idx.size == 0:
            return []
        sub = scores[idx]
    else:
        idx, sub = None, scores
    if sub.size > k:  # keep everything tied with the k-th score, so the cut below breaks ties by row too
        kth = np.partition(sub, sub.size - k)[sub.size - k]  # the k-th largest
        keep = np.flatnonzero(sub >= kth)
        idx, sub = (keep if idx is None else idx[keep]), sub[keep]
    elif idx is None:
        idx = np.arange(sub.size)
    order = np.lexsort((idx, -sub))[:k]  # score descending, then row ascending: deterministic ties
    return [(int(idx[i]), float(sub[i])) for i in order]


class EmbeddedBackend:
    """Chunks, tokens and vectors in memory; bm25s and numpy for the two queries."""

    def __init__(self, dim: int = 0):
        self.dim = int(dim)
        self.chunks: list[Chunk] = []
        self.tokens: list[list[str]] = []
        self.vectors = _column_major(np.zeros((0, self.dim), dtype=np.float32))
        self._bm25 = None
        self._rows: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.chunks)

    # ---- writes -----------------------------------------------------------------------------------
    def upsert(self, chunks: Sequence[Chunk], tokens: Sequence[list[str]], vectors: np.ndarray | None) -> None:
        if len(tokens) != len(chunks) or (self.dim and (vectors is None or len(vectors) != len(chunks))):
            raise ValueError("upsert needs one token list (and one vector, with an embedder) per chunk")
        replaced = [c.chunk_id for c in chunks if c.chunk_id in self._rows]
        if replaced:
            self.delete(replaced)
        self.chunks.extend(chunks)
        self.tokens.extend(list(t) for t in tokens)
        if self.dim:
            vecs = np.asarray(vectors, dtype=np.float32).reshape(len(chunks), self.dim)
            self.vectors = _column_major(np.concatenate([self.vectors, vecs]) if len(self.vectors) else vecs.copy())
        self._reindex()

    def delete(self, chunk_ids: Iterable[str]) -> None:
        drop = set(chunk_ids)
        keep = [i for i, c in enumerate(self.chunks) if c.chunk_id not in drop]
        self.chunks = [self.chunks[i] for i in keep]
        self.tokens = [self.tokens[i] for i in keep]
        if self.dim:
            self.vectors = _column_major(self.vectors[keep] if keep else np.zeros((0, self.dim), dtype=np.float32))
        self._reindex()

    def _reindex(self) -> None:
        self._rows = {c.chunk_id: i for i, c in enumerate(self.chunks)}
        self._bm25 = None

    # ---- queries ----------------------------------------------------------------------------------
    def _bm25_index(self):
        if self._bm25 is None and self.chunks:
            import bm25s

            index = bm25s.BM25(k1=BM25_K1, b=BM25_B, method=BM25_METHOD)
            index.index([t or ["\u0000"] for t in self.tokens], show_progress=False)
            self._bm25 = index
        return self._bm25

    def lexical(self, query_tokens: list[str], k: int) -> list[tuple[int, float]]:
        index = self._bm25_index()
        if index is None or not query_tokens:
            return []
        scores = np.asarray(index.get_scores(list(query_tokens)), dtype=np.float32)
        return _top(scores, k, positive=True)

    def dense(self, query_vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        if not self.dim or not len(self.chunks):
            return []
        q = np.asarray(query_vector, dtype=np.float32).reshape(-1)
        if q.size != self.dim:
            raise KogataError(f"query vector has {q.size} dimensions, the index {self.dim}", "query with the embedder the index was built with")
        return _top(self.vectors @ q, k, positive=False)

    def chunk(self, row: int) -> Chunk:
        return self.chunks[row]

    def row_of(self, chunk_id: str) -> int | None:
        return self._rows.get(chunk_id)

    def rows(self) -> Iterator[tuple[Chunk, list[str], np.ndarray | None]]:
        for i, c in enumerate(self.chunks):
            yield c, self.tokens[i], (self.vectors[i] if self.dim else None)

    def close(self) -> None:
        pass  # nothing held open: the files were read at load

    # ---- files ------------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Write ``chunks.sqlite`` (+ ``vectors.npy``) into ``folder``; same content, same bytes."""
        folder = Path(folder)
        path = folder / CHUNKS_FILE
        path.unlink(missing_ok=True)
        db = sqlite3.connect(str(path))
        try:
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("CREATE TABLE chunks (row INTEGER PRIMARY KEY, chunk_id TEXT UNIQUE NOT NULL, doc_id TEXT NOT NULL, "
                       "source TEXT NOT NULL, title TEXT NOT NULL, position INTEGER NOT NULL, start INTEGER NOT NULL, "
                       "end INTEGER NOT NULL, text TEXT NOT NULL, hash TEXT NOT NULL, tokens TEXT NOT NULL)")  # fmt: skip
            db.executemany(
                "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(i, c.chunk_id, c.doc_id, c.source, c.title, c.position, c.start, c.end, c.text, c.hash,
                  json.dumps(t, ensure_ascii=False)) for i, (c, t) in enumerate(zip(self.chunks, self.tokens))],
            )  # fmt: skip
            db.execute("CREATE INDEX chunks_doc ON chunks (doc_id)")
            db.commit()
        finally:
            db.close()
        if self.dim:
            np.save(folder / VECTORS_FILE, np.ascontiguousarray(self.vectors, dtype="<f4"), allow_pickle=False)

    @classmethod
    def load(cls, folder: Path, dim: int) -> EmbeddedBackend:
        folder = Path(folder)
        backend = cls(dim)
        db = sqlite3.connect(f"file:{folder / CHUNKS_FILE}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT chunk_id, doc_id, source, title, position, start, end, text, hash, tokens "
                              "FROM chunks ORDER BY row").fetchall()  # fmt: skip
        except sqlite3.DatabaseError as exc:
            raise KogataError(f"{folder / CHUNKS_FILE} is not a readable index ({exc})", "rebuild the index with `kogata index build`") from None
        finally:
            db.close()
        backend.chunks = [Chunk(*r[:8], hash=r[8]) for r in rows]
        backend.tokens = [json.loads(r[9]) for r in rows]
        if dim:
            vectors = np.load(folder / VECTORS_FILE, allow_pickle=False)
            if vectors.shape != (len(rows), dim):
                raise KogataError(f"{folder / VECTORS_FILE} has shape {vectors.shape}, expected ({len(rows)}, {dim})",
                                  "the index is damaged; rebuild it with `kogata index build`")  # fmt: skip
            backend.vectors = _column_major(vectors)
        backend._reindex()
        return backend
