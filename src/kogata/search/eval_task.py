"""Task type ``retrieval``: how well an embedder (and BM25, and their fusion) finds the passage a query needs.

```yaml
- name: handbook_search
  type: retrieval
  docs: company-docs/          # folders/files of documents, relative to the suite file (read like `kogata index build`)
  data: company-docs/queries-ja.jsonl   # {"id", "query", "gold": ["policies/returns.md"], "group": "paraphrase"}
  mode: hybrid                 # bm25 | dense | hybrid (default)
  keyword_weight: 0.2          # hybrid only
  chunk_size: 400
  overlap: 80
  tokenizer: sudachi           # or bigram
  level: document              # document (gold = document paths / ids) or chunk (gold = chunk ids)
  min_similarity: 0.2          # below this best (centred) cosine a query counts as "no answer" (no_answer_acc)
```

The runtime under evaluation is the embedder (``runtime_kind = "embedder"``: run it with ``--runtime e5`` or
``embedder``); the documents are chunked and embedded once per embedder (vectors cached by chunk hash under
``$KOGATA_HOME``). For every query with gold items: ``recall_at_1``, ``recall_at_5``, ``recall_at_10``,
``mrr_at_10`` and ``ndcg_at_10`` over the ranked list of documents (chunks mapped to their document, first
occurrence kept) or of chunks; each the mean over queries with a bootstrap 95% interval. Queries whose
``gold`` is empty have no answer in the documents: ``no_answer_acc`` is the share of them the retriever
judged weak (:func:`kogata.search.retrieve.is_weak`). Results also break every metric down by ``group``.

The document keys (``docs``, ``mode``, ``keyword_weight``, ``chunk_size``, ``overlap``, ``tokenizer``,
``min_similarity``) and the in-memory index live in :class:`DocumentSearchTask`, which ``rag_qa``
(:mod:`kogata.search.rag_task`) shares. Registered when this module is imported: ``kogata eval`` imports it by
name the first time a suite names ``type: retrieval`` (:data:`kogata.eval.tasks.PLUGIN_TASK_TYPES`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import kogata.core.settings as settings
import kogata.eval.metrics as M
from kogata.core.errors import KogataError
from kogata.eval.data import Record
from kogata.eval.tasks import N_SAMPLES, Progress, Task, register_task_type
from kogata.runtimes.base import GenerateRequest
from kogata.search.chunk import ChunkerSettings
from kogata.search.index import MemoryIndex, memory_index
from kogata.search.metrics import mrr_at, ndcg_at, recall_at
from kogata.search.retrieve import KEYWORD_WEIGHT, MIN_SIMILARITY, Retriever, check_mode, is_weak
from kogata.search.tokenize import TOKENIZERS

RETRIEVAL_METRICS = ("recall_at_1", "recall_at_5", "recall_at_10", "mrr_at_10", "ndcg_at_10", "no_answer_acc")
for _spec in (
    M.MetricSpec("recall_at_1", per_item=True, summary="retrieval: share of the gold passages ranked first"),
    M.MetricSpec("recall_at_5", per_item=True, summary="retrieval: share of the gold passages in the top 5"),
    M.MetricSpec("recall_at_10", per_item=True, summary="retrieval: share of the gold passages in the top 10"),
    M.MetricSpec("mrr_at_10", per_item=True, summary="retrieval: 1 / rank of the first gold passage (top 10)"),
    M.MetricSpec("ndcg_at_10", per_item=True, summary="retrieval: normalised discounted cumulative gain, top 10"),
    M.MetricSpec("no_answer_acc", per_item=True,
                 summary="share of no-answer queries judged not in the documents (retrieval: weak hits; rag_qa: the answer says so)"),
):
    if _spec.name not in M.METRICS:
        M.register_metric(_spec)


def _gold(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split("|") if v.strip()]  # CSV: a|b
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise TypeError(value)


def group_means(groups: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    """Per query group: each metric's mean over the group's items, and ``n`` (its largest item count)."""
    return {g: {m: sum(v) / len(v) for m, v in ms.items()} | {"n": max(len(v) for v in ms.values())}
            for g, ms in sorted(groups.items())}  # fmt: skip


class DocumentSearchTask(Task):
    """Shared by the document-search task types: the documents, how they are chunked, tokenised and ranked, and
    the in-memory index of them (built once per embedder, vectors through the cache under ``$KOGATA_HOME``)."""

    search_keys = ("docs", "mode", "keyword_weight", "chunk_size", "overlap", "tokenizer", "min_similarity")

    def _setup_search(self) -> None:
        docs = self.cfg.get("docs")
        docs = [docs] if isinstance(docs, str) else docs
        if not isinstance(docs, list) or not docs or not all(isinstance(d, str) and d for d in docs):
            raise KogataError(f"{self.where}: docs must be a folder/file or a list of them", "e.g. docs: company-docs/")
        self.docs = [(self.base_dir / d).resolve() for d in docs]
        for d in self.docs:
            if not d.exists():
                raise KogataError(f"{self.where}: docs path {d} does not exist", "paths are relative to the suite file")
        self.mode = check_mode(self._str("mode", "hybrid"))
        self.keyword_weight = self._float("keyword_weight", KEYWORD_WEIGHT)
        # None: the index's own bar (kogata.search.space: 0.20 for centred cosines)
        self.min_similarity = self._float("min_similarity", MIN_SIMILARITY) if "min_similarity" in self.cfg else None
        self.chunker = ChunkerSettings(self._int("chunk_size", 400, minimum=50), self._int("overlap", 80))
        self.tokenizer = self._str("tokenizer", "sudachi")
        if self.tokenizer not in TOKENIZERS:
            raise KogataError(f"{self.where}: tokenizer {self.tokenizer!r} is unknown", f"use one of: {', '.join(TOKENIZERS)}")
        self._indexes: dict[str, MemoryIndex] = {}

    def _float(self, key: str, default: float) -> float:
        value = self.cfg.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise KogataError(f"{self.where}: {key} must be a number, got {value!r}", f"e.g. {key}: {default}")
        return float(value)

    def index(self, embedder: Any) -> MemoryIndex:
        """``(backend, ingest, space)``: the task's documents chunked and indexed in memory, with ``embedder``'s
        vectors (None: BM25 only). Built once per embedder artifact."""
        key = str(getattr(embedder, "artifact_id", id(embedder))) if embedder is not None else "bm25"
        if key not in self._indexes:
            self._indexes[key] = memory_index(self.docs, embedder=embedder, chunker=self.chunker, tokenizer=self.tokenizer,
                                              cache_home=settings.kogata_home())  # fmt: skip
        return self._indexes[key]

    def new_retriever(self, embedder: Any) -> Retriever:
        """A retriever over :meth:`index` for ``embedder`` (None: BM25 only), in the index's dense space."""
        index = self.index(embedder)
        return Retriever(index.backend, self.tokenizer, embedder, keyword_weight=self.keyword_weight, space=index.space)

    def bar(self, retriever: Retriever) -> float:
        """The "not in the documents" similarity bar: the task's ``min_similarity``, else the index's default."""
        return retriever.min_similarity if self.min_similarity is None else self.min_similarity

    def search_info(self, retriever: Retriever) -> dict[str, Any]:
        return {"mode": self.mode, "keyword_weight": self.keyword_weight, "chunker": self.chunker.to_dict(),
                "tokenizer": self.tokenizer, "chunks": len(retriever.backend), "min_similarity": self.bar(retriever),
                "dense_space": "centred" if retriever.space is not None else "raw"}  # fmt: skip


@register_task_type("retrieval")
class RetrievalTask(DocumentSearchTask):
    metrics = RETRIEVAL_METRICS
    primary = ("recall_at_5", "mrr_at_10", "recall_at_1")
    runtime_kind = "embedder"
    keys = (*DocumentSearchTask.search_keys, "level", "query_field", "gold_field", "group_field", "depth")
    required = ("data", "docs")

    def __init__(self, cfg: dict[str, Any], **kw: Any):
        super().__init__(cfg, **kw)
        self._setup_search()
        self.level = self._str("level", "document")
        if self.level not in ("document", "chunk"):
            raise KogataError(f"{self.where}: level must be document or chunk, got {self.level!r}", "level: document")
        self.depth = self._int("depth", 50, minimum=10)
        self.query_field = self._str("query_field", "query")
        self.gold_field = self._str("gold_field", "gold")
        self.group_field = self._str("group_field", "group")
        self.golds = []
        for i, r in enumerate(self.records):
            try:
                self.golds.append(set(_gold(r.get(self.gold_field))))
            except TypeError:
                raise KogataError(f"{self.where}: item {self.item_id(r, i)}: {self.gold_field} must be a list of document ids",
                                  'e.g. "gold": ["policies/returns.md"], or [] for a query with no answer') from None  # fmt: skip
        self._retrievers: dict[str, Retriever] = {}

    def _extra_columns(self) -> list[str]:
        return [self.cfg.get("query_field") or "query"]

    def retriever(self, runtime: Any) -> Retriever:
        """The in-memory index of the task's documents for this embedder (built once per embedder), its gold checked."""
        dense = self.mode != "bm25"
        key = str(getattr(runtime, "artifact_id", id(runtime))) if dense else "bm25"
        if key not in self._retrievers:
            retriever = self.new_retriever(runtime if dense else None)
            backend, ingest = retriever.backend, self.index(runtime if dense else None).ingest
            known = {d.doc_id for d in ingest.documents} | {d.source for d in ingest.documents}
            if self.level == "chunk":
                known = {c.chunk_id for c in backend.chunks}
            unknown = sorted({g for gold in self.golds for g in gold} - known)
            if unknown:
                raise KogataError(f"{self.where}: gold {self.level} {unknown[0]!r} is not among the documents read from {self.docs[0]}",
                                  f"fix the data ({len(unknown)} unknown), or the docs path")  # fmt: skip
            self._retrievers[key] = retriever
        return self._retrievers[key]

    def _ids(self, hits: list[Any], gold: set[str]) -> list[str]:
        if self.level == "chunk":
            return [h.chunk.chunk_id for h in hits]
        return [h.chunk.source if h.chunk.source in gold else h.chunk.doc_id for h in hits]

    def _run(self, runtime: Any, items: list[tuple[int, Record]], progress: Progress) -> dict[str, Any]:
        retriever = self.retriever(runtime)
        queries = [str(r[self.query_field]) for _, r in items]
        rankings = []
        step = 32
        for lo in range(0, len(queries), step):
            rankings += retriever.search_many(queries[lo : lo + step], k=self.depth, mode=self.mode)
            progress(self.name, min(lo + step, len(queries)), len(queries))
        main = ("recall_at_1", "recall_at_5", "recall_at_10", "mrr_at_10", "ndcg_at_10")
        per_item: dict[str, list[Any]] = {"id": [], **{m: [] for m in main}}
        no_answer: dict[str, list[Any]] = {"id": [], "no_answer_acc": []}
        groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        samples = []
        for pos, ((i, record), hits) in enumerate(zip(items, rankings)):
            gold = self.golds[i]
            item_id = self.item_id(record, i)
            group = str(record.get(self.group_field) or "all")
            ranked = self._ids(hits, gold)
            if gold:
                scores = {"recall_at_1": recall_at(ranked, gold, 1), "recall_at_5": recall_at(ranked, gold, 5),
                          "recall_at_10": recall_at(ranked, gold, 10), "mrr_at_10": mrr_at(ranked, gold, 10),
                          "ndcg_at_10": ndcg_at(ranked, gold, 10)}  # fmt: skip
                per_item["id"].append(item_id)
            else:
                scores = {"no_answer_acc": float(is_weak(hits[:5], self.bar(retriever)) if self.mode != "bm25" else not hits)}
                no_answer["id"].append(item_id)
            for m, v in scores.items():
                (per_item if gold else no_answer)[m].append(v)
                groups[group][m].append(v)
            if len(samples) < N_SAMPLES:
                samples.append({"id": item_id, "prompt": queries[pos], "target": sorted(gold),
                                "prediction": ranked[:5], "score": scores})  # fmt: skip
        metrics = {m: M.mean_with_ci(per_item[m], seed=self.seed) if per_item[m] else M.not_reported("no query has gold passages", 0)
                   for m in main}  # fmt: skip
        metrics["no_answer_acc"] = (M.mean_with_ci(no_answer["no_answer_acc"], seed=self.seed) if no_answer["id"]
                                    else M.not_reported("no query without an answer in the data", 0))  # fmt: skip
        by_group = group_means(groups)
        info = {**self.search_info(retriever), "level": self.level}
        return {"metrics": metrics, "per_item": per_item, "per_item_no_answer": no_answer, "groups": by_group,
                "retrieval": info, "samples": samples}  # fmt: skip

    def prompts(self, n: int) -> list[GenerateRequest]:
        return [GenerateRequest(prompt=str(r[self.query_field]), max_tokens=1) for _, r in self.selected(n)]

