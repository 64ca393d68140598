"""``POST /v1/search``: rank the chunks of a document index (built with ``kogata index build``) for a query.

Body ``{"index": "support", "query": "返品の期限は？", "k": 5, "mode": "hybrid"}`` (``mode`` and ``k`` optional;
``keyword_weight`` tunes hybrid fusion). The answer lists the chunks with source, title, score (and the raw BM25
score and cosine), plus ``weak``: true when nothing relevant enough was found — what a grounded answer turns
into "資料に記載がありません / not in the documents".

Indexes are opened from the server's store on first use and kept (with their embedder) in
:class:`SearchIndexes` on ``app.state``; a newer version built while the server runs is picked up within
``RECHECK_S`` seconds. ``preload(app, names)`` opens some at startup. Errors are OpenAI-shaped: an unknown
index is a 404 (``index_not_found``), a dense query on a BM25-only index a 400.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr
from starlette.concurrency import run_in_threadpool

from kogata.core.errors import KogataError
from kogata.serve.errors import APIError
from kogata.serve.gateway.auth import Principal
from kogata.serve.schemas import ERROR_RESPONSES
from kogata.serve.state import ServeState, authenticate, get_state

router = APIRouter(prefix="/v1", tags=["search"])
RECHECK_S = 10.0
MAX_K = 50


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    index: StrictStr = Field(min_length=1, max_length=64, description="Index name (see `kogata index list`).")
    query: StrictStr = Field(min_length=1, max_length=2000, description="The query, Japanese or English.")
    k: StrictInt = Field(default=5, ge=1, le=MAX_K, description="How many chunks to return.")
    mode: Literal["hybrid", "bm25", "dense"] | None = Field(default=None, description="Default: hybrid (bm25 without an embedder).")
    keyword_weight: StrictFloat | StrictInt | None = Field(default=None, ge=0, le=1, description="Hybrid: weight of BM25 (default 0.2).")


class SearchHit(BaseModel):
    rank: int
    chunk_id: str
    doc_id: str
    source: str
    title: str
    score: float
    bm25: float | None = None
    similarity: float | None = None
    text: str


class SearchResults(BaseModel):
    object: Literal["search.results"] = "search.results"
    index: str
    index_version: int
    artifact: str
    mode: str
    weak: bool
    data: list[SearchHit]


class SearchIndexes:
    """Open indexes by name, shared by the requests of one app (opening one loads its chunks and its embedder)."""

    def __init__(self, store: Any):
        self.store = store
        self._lock = threading.Lock()
        self._open: dict[str, tuple[Any, float]] = {}  # name -> (SearchIndex, last freshness check)

    def get(self, name: str) -> Any:
        from kogata.search.index import SearchIndex, check_name, latest

        check_name(name)
        with self._lock:
            entry = self._open.get(name)
            now = time.monotonic()
            if entry is not None and now - entry[1] < RECHECK_S:
                return entry[0]
            if entry is not None:
                newest = latest(self.store, name)
                if newest is not None and newest.id == entry[0].artifact.id:
                    self._open[name] = (entry[0], now)
                    return entry[0]
                entry[0].close()
            index = SearchIndex.open(self.store, name)
            if index.embedder_info is not None:
                index.embedder()  # load it now, not in the middle of the first query's timing
            self._open[name] = (index, now)
            return index

    def close(self) -> None:
        with self._lock:
            for index, _ in self._open.values():
                index.close()
            self._open.clear()


def indexes_of(request: Request, state: ServeState) -> SearchIndexes:
    holder = getattr(request.app.state, "kogata_search", None)
    if holder is None:
        with _HOLDER_LOCK:
            holder = getattr(request.app.state, "kogata_search", None)
            if holder is None:
                holder = SearchIndexes(state.store)
                request.app.state.kogata_search = holder
    return holder


_HOLDER_LOCK = threading.Lock()


def preload(app: Any, names: list[str]) -> None:
    """Open ``names`` now (startup): KogataError for an unknown index, before the server binds."""
    holder = getattr(app.state, "kogata_search", None) or SearchIndexes(app.state.kogata.store)
    app.state.kogata_search = holder
    for name in names:
        holder.get(name)


def retrieve(holder: SearchIndexes, name: str, query: str, k: int, mode: str | None = None,
             keyword_weight: float | None = None) -> tuple[Any, str, list[Any]]:
    """(index, mode used, ranked hits) — what ``/v1/search`` and grounded chat completions share; APIError (4xx/503)
    for an unknown index or a mode it cannot do."""
    try:
        index = holder.get(name)
    except KogataError as exc:
        if exc.message.startswith("no search index named") or exc.message.startswith("index name"):
            raise APIError(404, f"no search index named {name!r}", code="index_not_found", param="index") from None
        raise APIError(503, f"index {name!r} could not be opened: {exc}", code="index_unavailable", param="index") from None
    mode = mode or ("hybrid" if index.embedder_info else "bm25")
    if mode != "bm25" and index.embedder_info is None:
        raise APIError(400, f"index {name!r} has no embedder (BM25 only); mode {mode!r} needs one", code="invalid_mode", param="mode")
    retriever = index.retriever(keyword_weight=None if keyword_weight is None else float(keyword_weight), need_dense=mode != "bm25")
    return index, mode, retriever.search(query, k, mode)


def _search(holder: SearchIndexes, body: SearchRequest) -> dict[str, Any]:
    from kogata.search.retrieve import is_weak
    from kogata.search.space import default_min_similarity

    index, mode, hits = retrieve(holder, body.index, body.query, body.k, body.mode, body.keyword_weight)
    return {"object": "search.results", "index": index.name, "index_version": index.meta["version"], "artifact": index.artifact.id,
            "mode": mode, "weak": is_weak(hits, default_min_similarity(index.space)), "data": [h.to_dict() for h in hits]}  # fmt: skip


@router.post("/search", response_model=SearchResults, responses=ERROR_RESPONSES)
async def search(body: SearchRequest, request: Request, state: ServeState = Depends(get_state),
                 who: Principal = Depends(authenticate)) -> Any:  # fmt: skip
    """Rank the chunks of a document index for a query (BM25, dense or hybrid)."""
    state.quotas.admit(who)
    holder = indexes_of(request, state)
    result = await run_in_threadpool(_search, holder, body)
    request.state.artifact_id = result["artifact"]
    state.usage.count(who, requests=1, tokens_in=0)
    return result
