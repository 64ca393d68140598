"""The dense space an index searches in: chunk and query embeddings mean-centred, then re-normalised.

Sentence embedders such as multilingual-e5 put every text in a narrow cone (two unrelated passages have cosine
≈ 0.8), and a few short or bilingual chunks end up near everything ("hubs": the FAQ one-liners and the ja/en
calendar of the sample handbook came back first for many unrelated questions). Subtracting the mean direction
before the cosine removes what all texts share. Passages and queries have different means (e5 embeds them
with different prefixes), so each side is centred by its own:

* the passage mean is the mean of the index's own chunk vectors (computed when a version is written; an index
  version never changes afterwards, and each ``update`` writes a new version);
* the query mean is the mean of :data:`CALIBRATION` questions — the support-desk suites' training questions and
  intents (ja + en, 240 texts) that ship with kogata, none of them from the company-docs evaluation — embedded
  once per embedder and cached with the chunk vectors.

The stored vectors are the centred ones, so every backend (numpy or pgvector) ranks by a plain inner product
and :func:`kogata.search.backend` stays unaware of it; the query vector is centred by :meth:`DenseSpace.query`
before it is searched. Measured on company-docs (``benchmarks/search.py``, hybrid recall@5): ja 0.934 → 0.952,
en 0.958 → 0.964. Cosines in this space are lower than raw ones (a relevant chunk ≈ 0.2–0.5 instead of
0.83–0.9), so the "not in the documents" bar has its own default, :data:`MIN_SIMILARITY`. Indexes written
before this (no ``dense_space`` in ``index.json``) search raw vectors with the raw bar, as before.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

SPACE_FILE = "dense_space.npy"  # (2, dim) float32: passage mean, query mean
MIN_SIMILARITY = 0.20  # best centred cosine below which an answer is "not in the documents" (docs/search.md)
RAW_MIN_SIMILARITY = 0.80  # the same bar for raw cosines (indexes without a dense space)
CALIBRATION = ("support-desk-ja/faq_train.jsonl:question", "support-desk-ja/intents.jsonl:text",
               "support-desk-en/faq_train.jsonl:question", "support-desk-en/intents.jsonl:text")  # fmt: skip


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def calibration_questions() -> list[str]:
    """The generic questions the query mean is computed from (packaged suite files, in a fixed order)."""
    suites = resources.files("kogata") / "suites"
    out: list[str] = []
    for spec in CALIBRATION:
        rel, field = spec.rsplit(":", 1)
        for line in (suites / rel).read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.append(str(json.loads(line)[field]))
    return out


@dataclass(frozen=True)
class DenseSpace:
    passage_mean: np.ndarray
    query_mean: np.ndarray
    min_similarity: float = MIN_SIMILARITY

    def passages(self, vectors: np.ndarray) -> np.ndarray:
        """Chunk vectors as the index stores them: centred by the passage mean, unit length."""
        return _unit(np.asarray(vectors, dtype=np.float32) - self.passage_mean)

    def query(self, vector: np.ndarray) -> np.ndarray:
        """A query vector (or rows of them) as it is searched: centred by the query mean, unit length."""
        return _unit(np.asarray(vector, dtype=np.float32) - self.query_mean)

    def save(self, folder: Path) -> None:
        np.save(Path(folder) / SPACE_FILE, np.stack([self.passage_mean, self.query_mean]).astype("<f4"), allow_pickle=False)

    @classmethod
    def load(cls, folder: Path) -> DenseSpace:
        arr = np.load(Path(folder) / SPACE_FILE, allow_pickle=False)
        return cls(np.ascontiguousarray(arr[0], dtype=np.float32), np.ascontiguousarray(arr[1], dtype=np.float32))

    def info(self) -> dict[str, Any]:
        return {"centred": True, "file": SPACE_FILE, "calibration_questions": len(calibration_questions()),
                "min_similarity": self.min_similarity}  # fmt: skip


def _calibration_keys() -> tuple[list[str], list[str]]:
    texts = calibration_questions()
    return texts, ["query:" + hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]


def query_mean_cached(cache: Any) -> bool:
    """Whether ``cache`` holds every calibration vector (so no embedder needs to be opened for the query mean)."""
    _, keys = _calibration_keys()
    return cache is not None and len(cache.get_many(keys)) == len(keys)


def query_mean(runtime: Any, cache: Any = None) -> np.ndarray:
    """The mean query vector of ``runtime`` over :func:`calibration_questions` (cached by text hash in ``cache``,
    a :class:`~kogata.search.vectors.VectorCache`, under keys no chunk hash can take)."""
    from kogata.search.vectors import embed_queries

    texts, keys = _calibration_keys()
    known = cache.get_many(keys) if cache is not None else {}
    todo = [i for i, k in enumerate(keys) if k not in known]
    if todo:
        fresh = embed_queries(runtime, [texts[i] for i in todo])
        new = {keys[i]: v for i, v in zip(todo, fresh)}
        if cache is not None:
            cache.put_many(new)
        known.update(new)
    return np.mean(np.stack([known[k] for k in keys]), axis=0).astype(np.float32)


def fit_space(vectors: np.ndarray, runtime: Any, cache: Any = None) -> DenseSpace | None:
    """The space for an index version with these raw chunk vectors (None when there are none)."""
    if vectors is None or not len(vectors):
        return None
    return DenseSpace(np.asarray(vectors, dtype=np.float32).mean(axis=0), query_mean(runtime, cache))


def default_min_similarity(space: DenseSpace | None) -> float:
    return space.min_similarity if space is not None else RAW_MIN_SIMILARITY
