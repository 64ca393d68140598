"""Search indexes as store artifacts: build, update (incremental by content hash), list, open.

An index named ``NAME`` is a series of immutable ``search-index`` artifacts ``index-NAME-v1``, ``-v2`` … (the
newest is the index; the previous one is kept, older ones are removed). Each holds::

    index.json       settings and lineage: tokenizer, chunker (size, overlap), embedder artifact id and dim,
                     docs fingerprint, the inputs it was read from, one row per document (id, source, title, sha)
    chunks.sqlite    the chunks (text, source, title, position, span, content hash) and their BM25 tokens
    vectors.npy      float32 (n_chunks, dim) chunk embeddings, row-aligned, in the index's centred dense space
                     (absent for --embedder none)
    dense_space.npy  the passage and query means of that space (:mod:`kogata.search.space`)

With ``backend=postgresql://user@host:port/db`` (``--backend``, or ``$KOGATA_SEARCH_BACKEND``) the chunks, tokens
and vectors live in that database instead (:mod:`kogata.search.backend_pg`, one pair of tables per version) and
``index.json`` records the URL (never its password) and the table; ``update`` keeps the index's backend. Which
backend a version uses, and opening, creating and dropping it, is :mod:`kogata.search.backends`.

``build`` reads the documents, chunks them and embeds every chunk whose hash is not in the vector cache (or the
previous version); ``update`` re-reads the documents (the same inputs by default), keeps the settings of the
index, and embeds only new or changed chunks. Both stage the files and commit the artifact only when complete:
a failed or interrupted run leaves the previous version as it was.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from kogata.artifacts.artifact import Artifact, LineageStep
from kogata.core.errors import KogataError
from kogata.search.backend import EmbeddedBackend, SearchBackend
from kogata.search.backends import (  # noqa: F401  (PG_UPSERT_BATCH: still importable from kogata.search.index)
    EMBEDDED,
    PG_UPSERT_BATCH,
    check_backend,
    drop_backend,
    new_backend,
    open_backend,
    recorded_location,
    upsert_batch,
)
from kogata.search.chunk import ChunkerSettings, chunk_documents
from kogata.search.ingest import MAX_FILE_MB, IngestResult, read_documents
from kogata.search.retrieve import Retriever
from kogata.search.space import SPACE_FILE, DenseSpace, fit_space, query_mean_cached
from kogata.search.tokenize import get_tokenizer
from kogata.search.vectors import VectorCache, embed_with_cache, open_embedder, resolve_embedder

FORMAT = "search-index"
KIND = "search-index"
INDEX_FILE = "index.json"
INDEX_VERSION = 1
KEEP_VERSIONS = 2
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
Progress = Callable[[str, int, int], None]  # (stage: read | embed, done, total)


@dataclass
class BuildReport:
    artifact: Artifact | None
    name: str
    version: int
    documents: int
    chunks: int
    embedded: int  # chunks embedded in this run (the rest came from the cache / previous version)
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    pii: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    up_to_date: bool = False


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise KogataError(f"index name {name!r} is not valid", "use letters, digits, '.', '_' and '-' (at most 64 characters)")
    return name


def index_artifacts(store: Any, name: str | None = None) -> list[Artifact]:
    """Every version of every index (or of ``name``), oldest first."""
    arts = [a for a in store.list() if a.format == FORMAT and isinstance(a.manifest.get("index"), dict)]
    if name is not None:
        arts = [a for a in arts if a.manifest["index"].get("name") == name]
    return sorted(arts, key=lambda a: (a.manifest["index"].get("name", ""), a.manifest["index"].get("version", 0)))


def latest(store: Any, name: str) -> Artifact | None:
    versions = index_artifacts(store, name)
    return versions[-1] if versions else None


def list_indexes(store: Any) -> list[dict[str, Any]]:
    """One row per index name (its newest version)."""
    newest: dict[str, Artifact] = {}
    for a in index_artifacts(store):
        newest[a.manifest["index"]["name"]] = a
    rows = []
    for name, a in sorted(newest.items()):
        meta = read_meta(a)
        rows.append({"name": name, "version": meta["version"], "artifact": a.id, "documents": len(meta["documents"]),
                     "chunks": meta["chunks"], "embedder": (meta.get("embedder") or {}).get("name"), "tokenizer": meta["tokenizer"],
                     "chunker": meta["chunker"], "bytes": a.bytes, "created": a.manifest.get("created"),
                     "backend": meta.get("backend", EMBEDDED)})  # fmt: skip
    return rows


def read_meta(artifact: Artifact) -> dict[str, Any]:
    try:
        return json.loads((Path(artifact.path) / INDEX_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise KogataError(f"index artifact {artifact.id} has no readable {INDEX_FILE} ({exc})", "rebuild it with `kogata index build`") from None


def _meta_or_none(artifact: Artifact) -> dict[str, Any] | None:
    try:
        return read_meta(artifact)
    except KogataError:
        return None


def get_index_artifact(store: Any, name: str) -> Artifact:
    art = latest(store, name)
    if art is None:
        known = sorted({a.manifest["index"]["name"] for a in index_artifacts(store)})
        hint = f"known indexes: {', '.join(known)}" if known else "build one with `kogata index build DOCS --name NAME`"
        raise KogataError(f"no search index named {name!r} in {store.home}", hint)
    return art


# ---- an open index ---------------------------------------------------------------------------------
class SearchIndex:
    """An index loaded from its artifact: the backend in memory, the embedder opened on first dense query."""

    def __init__(self, artifact: Artifact, meta: dict[str, Any], backend: SearchBackend, store: Any = None):
        self.artifact, self.meta, self.backend, self.store = artifact, meta, backend, store
        self._embedder = None
        self._retriever: Retriever | None = None
        self.space = read_space(artifact, meta)

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def embedder_info(self) -> dict[str, Any] | None:
        return self.meta.get("embedder")

    @classmethod
    def open(cls, store: Any, name: str, *, embedder: str | None = None) -> SearchIndex:
        """The newest version of index ``name``; ``embedder`` (a name or id) must be the one it was built with."""
        art = get_index_artifact(store, check_name(name))
        meta = read_meta(art)
        check_embedder_matches(store, meta, embedder)
        return cls(art, meta, open_backend(art, meta), store)

    def embedder(self) -> Any:
        info = self.embedder_info
        if info is None:
            return None
        if self._embedder is None:
            if self.store is None:
                raise KogataError(f"index {self.name} needs its embedder, but no store was given", "open the index with SearchIndex.open(store, name)")
            art = self.store.find(info["id"])
            if art is None:
                raise KogataError(f"index {self.name} was built with embedder {info['name']} ({info['id']}), which is not in the store",
                                  f"pull it again (`kogata models pull {info['name']}`) or rebuild the index")  # fmt: skip
            self._embedder = open_embedder(art)
        return self._embedder

    def retriever(self, *, keyword_weight: float | None = None, need_dense: bool = True) -> Retriever:
        kw = {} if keyword_weight is None else {"keyword_weight": keyword_weight}
        if keyword_weight is None and self._retriever is not None:
            return self._retriever
        r = Retriever(self.backend, self.meta["tokenizer"], self.embedder() if need_dense else None, space=self.space, **kw)
        if keyword_weight is None and need_dense:
            self._retriever = r
        return r

    def close(self) -> None:
        if self._embedder is not None:
            self._embedder.close()
            self._embedder = None
        self.backend.close()


def read_space(artifact: Artifact, meta: dict[str, Any]) -> DenseSpace | None:
    """The dense space an index version's vectors live in (None: raw vectors, an index from before spaces)."""
    if not meta.get("dense_space"):
        return None
    try:
        return DenseSpace.load(artifact.path)
    except (OSError, ValueError) as exc:
        raise KogataError(f"{Path(artifact.path) / SPACE_FILE} is unreadable ({exc})", "rebuild the index with `kogata index build`") from None


def check_embedder_matches(store: Any, meta: dict[str, Any], requested: str | None) -> None:
    """KogataError when ``requested`` (an embedder name or id, or 'none') is not the index's embedder."""
    if requested is None:
        return
    have = meta.get("embedder")
    if requested == "none":
        if have is not None:
            raise KogataError(f"index {meta['name']} was built with embedder {have['name']}, not without one",
                              "leave out --embedder, or build another index with --embedder none")  # fmt: skip
        return
    art = store.find(requested)
    wanted_id = art.id if art is not None else requested
    if have is None or have["id"] != wanted_id:
        built = f"embedder {have['name']} ({have['id']})" if have else "no embedder (BM25 only)"
        raise KogataError(f"index {meta['name']} was built with {built}, not {requested}",
                          f"query it with its own embedder (leave out --embedder), or rebuild it: kogata index build DOCS --name {meta['name']} --embedder {requested}")  # fmt: skip


# ---- building ----------------------------------------------------------------------------------------
def build_index(store: Any, inputs: list[Path], name: str, *, chunker: ChunkerSettings | None = None, embedder: str | None = None,
                tokenizer: str = "sudachi", scrub_pii: bool = False, max_file_mb: float = MAX_FILE_MB, skip_unreadable: bool = False,
                progress: Progress | None = None, log: Callable[[str], None] = lambda m: None, backend: str = EMBEDDED) -> BuildReport:  # fmt: skip
    """Build index ``name`` from ``inputs`` (a new version when it exists). ``embedder='none'``: BM25 only.
    ``backend``: ``'embedded'`` (files in the artifact) or a PostgreSQL URL to hold the chunks."""
    check_name(name)
    previous = latest(store, name)
    return _write_version(store, name, previous, inputs=inputs, chunker=chunker or ChunkerSettings(), embedder_ref=embedder,
                          tokenizer=tokenizer, scrub_pii=scrub_pii, max_file_mb=max_file_mb, skip_unreadable=skip_unreadable,
                          progress=progress, log=log, method="index-build", backend=check_backend(backend))  # fmt: skip


def update_index(store: Any, name: str, inputs: list[Path] | None = None, *, embedder: str | None = None,
                 max_file_mb: float = MAX_FILE_MB, skip_unreadable: bool = False, progress: Progress | None = None,
                 log: Callable[[str], None] = lambda m: None) -> BuildReport:  # fmt: skip
    """Bring index ``name`` up to date with ``inputs`` (default: the inputs it was built from), keeping its settings."""
    previous = get_index_artifact(store, check_name(name))
    meta = read_meta(previous)
    check_embedder_matches(store, meta, embedder)
    paths = [Path(p) for p in (inputs or meta["inputs"])]
    info = meta.get("embedder")
    return _write_version(store, name, previous, inputs=paths, chunker=ChunkerSettings(**meta["chunker"]),
                          embedder_ref=info["id"] if info else "none", tokenizer=meta["tokenizer"], scrub_pii=meta["scrub_pii"],
                          max_file_mb=max_file_mb, skip_unreadable=skip_unreadable, progress=progress, log=log,
                          method="index-update", backend=meta.get("backend", EMBEDDED))  # fmt: skip


def _write_version(store: Any, name: str, previous: Artifact | None, *, inputs: list[Path], chunker: ChunkerSettings,
                   embedder_ref: str | None, tokenizer: str, scrub_pii: bool, max_file_mb: float, skip_unreadable: bool,
                   progress: Progress | None, log: Callable[[str], None], method: str, backend: str) -> BuildReport:  # fmt: skip
    started = time.perf_counter()
    say = progress or (lambda *a: None)
    tokenize = get_tokenizer(tokenizer)
    emb_art = None if embedder_ref == "none" else resolve_embedder(store, embedder_ref, log)
    backend_recorded = recorded_location(backend, need_pgvector=emb_art is not None)  # a bad server fails now, not after the embedding
    ingest: IngestResult = read_documents(list(inputs), scrub_pii=scrub_pii, max_file_mb=max_file_mb, skip_unreadable=skip_unreadable,
                                          on_file=lambda s, i, n: say("read", i, n))  # fmt: skip
    docs = ingest.documents
    seen: set[str] = set()
    for d in docs:
        if d.doc_id in seen:
            raise KogataError(f"two documents have the id {d.doc_id!r}", "give each input folder once")
        seen.add(d.doc_id)
    prev_meta = read_meta(previous) if previous is not None else None
    settings_now = {"tokenizer": tokenizer, "chunker": chunker.to_dict(), "scrub_pii": scrub_pii,
                    "embedder": emb_art.id if emb_art is not None else None, "backend": backend_recorded}  # fmt: skip
    fingerprint = ingest.fingerprint()
    report = BuildReport(None, name, 0, len(docs), 0, 0, skipped=ingest.skipped, pii=ingest.pii)
    old_docs = {d["doc_id"]: d["sha"] for d in prev_meta["documents"]} if prev_meta else {}
    new_docs = {d.doc_id: d.sha for d in docs}
    report.added = sorted(new_docs.keys() - old_docs.keys())
    report.removed = sorted(old_docs.keys() - new_docs.keys())
    report.changed = sorted(k for k in new_docs.keys() & old_docs.keys() if new_docs[k] != old_docs[k])
    report.unchanged = len(new_docs.keys() & old_docs.keys()) - len(report.changed)
    centred_before = bool(prev_meta and prev_meta.get("dense_space"))  # an index from before dense spaces is rewritten centred
    if (prev_meta is not None and prev_meta["docs_fingerprint"] == fingerprint and _settings_of(prev_meta) == settings_now
            and centred_before == (emb_art is not None)):  # fmt: skip
        report.artifact, report.version, report.chunks = previous, prev_meta["version"], prev_meta["chunks"]
        report.up_to_date, report.seconds = True, time.perf_counter() - started
        return report
    chunks = chunk_documents(docs, chunker)
    reuse_tokens: dict[str, list[str]] = {}
    reuse_vecs: dict[str, Any] = {}
    prev_backend = None
    if previous is not None:
        try:
            prev_backend = open_backend(previous, prev_meta)
        except KogataError as exc:  # e.g. its server is gone: the vector cache still spares most of the embedding
            log(f"could not read the previous version {previous.name} ({exc}); tokenizing every chunk again")
    if prev_backend is not None:
        try:
            # a version's stored vectors are centred (not the embedder's output) unless it predates dense spaces
            same_embedder = (prev_backend.dim and emb_art is not None and prev_meta["embedder"]["id"] == emb_art.id
                             and not prev_meta.get("dense_space"))  # fmt: skip
            for c, toks, vec in prev_backend.rows():
                reuse_tokens[c.hash] = toks
                if same_embedder:
                    reuse_vecs[c.hash] = vec
        finally:
            prev_backend.close()
    tokens = [reuse_tokens.get(c.hash) or tokenize(c.embed_text) for c in chunks]
    vectors = None
    space = None
    dim = 0
    if emb_art is not None:
        cache = VectorCache.for_embedder(store.home, emb_art.id)
        try:
            if reuse_vecs:  # the previous version's vectors, in case the cache was cleared
                cache.put_many(reuse_vecs)
            cached = cache.get_many([c.hash for c in chunks])
            need = any(c.hash not in cached for c in chunks) or (len(chunks) > 0 and not query_mean_cached(cache))
            runtime = open_embedder(emb_art) if need else _NoEmbedder()
            try:
                vectors, report.embedded = embed_with_cache(runtime, [c.embed_text for c in chunks], [c.hash for c in chunks], cache,
                                                            progress=lambda d, n: say("embed", d, n))  # fmt: skip
                space = fit_space(vectors, runtime, cache)
            finally:
                runtime.close()
        finally:
            cache.close()
        dim = int(vectors.shape[1]) if len(chunks) else 0
        if space is not None:
            vectors = space.passages(vectors)
    version = (prev_meta["version"] + 1) if prev_meta else 1
    meta = {
        "index_version": INDEX_VERSION,
        "name": name,
        "version": version,
        **settings_now,
        "embedder": {"id": emb_art.id, "name": emb_art.name, "dim": dim} if emb_art is not None else None,
        "dense_space": space.info() if space is not None else None,
        **({"backend_table": None} if backend != EMBEDDED else {}),
        "docs_fingerprint": fingerprint,
        "inputs": [str(Path(p).expanduser().resolve()) for p in inputs],
        "chunks": len(chunks),
        "documents": [{"doc_id": d.doc_id, "source": d.source, "title": d.title, "sha": d.sha} for d in docs],
    }
    step = LineageStep(method=method, config={k: v for k, v in meta.items() if k not in ("documents",)}, data_fingerprint=fingerprint,
                       metrics={"documents": len(docs), "chunks": len(chunks), "embedded": report.embedded,
                                "added": len(report.added), "changed": len(report.changed), "removed": len(report.removed)})  # fmt: skip
    with store.stage() as staging, new_backend(backend, name, version, dim) as new:
        batch = upsert_batch(backend, len(chunks))
        for lo in range(0, len(chunks), batch):
            part = slice(lo, lo + batch)
            new.upsert(chunks[part], tokens[part], vectors[part] if vectors is not None else None)
        if space is not None:
            space.save(staging.dir)
        if backend == EMBEDDED:
            new.save(staging.dir)
        else:
            new.finish_build()
            meta["backend_table"] = step.config["backend_table"] = new.table
        (staging.dir / INDEX_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
        step.duration_s = time.perf_counter() - started
        art = staging.commit(format=FORMAT, kind=KIND, name=f"index-{name}-v{version}", parent=previous, step=step, params=0,
                             extra={"index": {"name": name, "version": version}})  # fmt: skip
    for old in index_artifacts(store, name)[:-KEEP_VERSIONS]:
        drop_backend(old, _meta_or_none(old), log)
        store.remove(old.id)
    report.artifact, report.version, report.chunks = art, version, len(chunks)
    report.seconds = time.perf_counter() - started
    return report


def _settings_of(meta: dict[str, Any]) -> dict[str, Any]:
    return {"tokenizer": meta["tokenizer"], "chunker": meta["chunker"], "scrub_pii": meta["scrub_pii"],
            "embedder": (meta.get("embedder") or {}).get("id"), "backend": meta.get("backend", EMBEDDED)}  # fmt: skip


class MemoryIndex(NamedTuple):
    backend: EmbeddedBackend
    ingest: IngestResult
    space: DenseSpace | None


class _NoEmbedder:
    """Stands in for the runtime when every vector is cached (loading the model would cost seconds for nothing)."""

    dim = 0

    def embed(self, texts: list[str]) -> Any:
        raise AssertionError("every vector was expected in the cache")

    def close(self) -> None:
        pass


def memory_index(inputs: list[Path], *, embedder: Any = None, chunker: ChunkerSettings | None = None, tokenizer: str = "sudachi",
                 cache_home: Path | None = None, progress: Progress | None = None) -> MemoryIndex:  # fmt: skip
    """An index in memory only (evaluation, benchmarks): documents read and chunked as ``build_index`` does, vectors
    from ``embedder`` (an open embedder runtime; None for BM25 only) through the vector cache under ``cache_home``,
    centred in their dense space as ``build_index`` stores them."""
    say = progress or (lambda *a: None)
    tokenize = get_tokenizer(tokenizer)
    ingest = read_documents(list(inputs), on_file=lambda s, i, n: say("read", i, n))
    chunks = chunk_documents(ingest.documents, chunker or ChunkerSettings())
    tokens = [tokenize(c.embed_text) for c in chunks]
    vectors, dim, space = None, 0, None
    if embedder is not None:
        cache = None
        if cache_home is not None and getattr(embedder, "artifact_id", None):
            cache = VectorCache.for_embedder(cache_home, str(embedder.artifact_id))
        try:
            vectors, _ = embed_with_cache(embedder, [c.embed_text for c in chunks], [c.hash for c in chunks], cache,
                                          progress=lambda d, n: say("embed", d, n))  # fmt: skip
            space = fit_space(vectors, embedder, cache)
        finally:
            if cache is not None:
                cache.close()
        dim = int(vectors.shape[1])
        if space is not None:
            vectors = space.passages(vectors)
    backend = EmbeddedBackend(dim)
    backend.upsert(chunks, tokens, vectors)
    return MemoryIndex(backend, ingest, space)
