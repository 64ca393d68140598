"""Task type ``rag_qa``: does the generator under evaluation answer from the retrieved passages, and cite them?

```yaml
- name: handbook_answers
  type: rag_qa
  docs: [company-docs/en, company-docs/shared]   # read, chunked and ranked exactly as in a retrieval task
  data: company-docs/queries-en.jsonl   # {"id", "query", "answer": "45 W" (or a list, or "" = not in the documents), "group"}
  embedder: multilingual-e5-small       # a store artifact (name or id; the catalog's e5 is pulled once); unused with mode: bm25
  mode: hybrid                          # bm25 | dense | hybrid; keyword_weight, chunk_size, overlap, tokenizer, min_similarity
  k: 3                                  # passages given to the model
  max_tokens: 96
  chat: auto                            # auto: chat messages when the model has a chat template, else one plain
                                        #   completion prompt (base models); true | false force either
  answer_language: auto                 # auto (per question, as `kogata ask`) | ja | en
  retrieval: search                     # none: the no-retrieval baseline (same questions, model and prompt language)
```

The runtime under evaluation is the generator (``runtime_kind = "lm"``); the embedder is the task's, opened for
the run and closed after it. Every question is retrieved (top ``k``) and answered by
:func:`kogata.search.answer.answer_question` with its ja/en grounded prompt; a weak retrieval gets
"資料に記載がありません / not in the documents" without calling the model. Scores, each the mean with a
bootstrap 95% interval:

* over questions with a gold answer: ``f1`` and ``exact_match`` (the ja/en normalisation of
  :mod:`kogata.eval.metrics`, citation markers removed first; the best over several gold answers; 0 when the
  answer is "not in the documents"), ``answer_contains`` (the normalised gold answer appears in the answer)
  and ``context_recall`` (it appears in one of the ``k`` passages: what retrieval made possible);
* over those the model answered: ``citation_accuracy`` — the share whose cited passages (the ``[n]`` left after
  :func:`~kogata.search.answer.parse_citations`, mapped to the n-th passage) contain the gold answer;
* over questions whose gold answer is empty: ``no_answer_acc`` — the share answered "not in the documents".

* over every answered question: ``grounded_rate`` — the share whose answer is supported by the passages it was
  given, judged by :func:`kogata.data.grounding.judge` (the very test of the guard's ``grounding`` check).

``retrieval: none`` is the baseline without retrieval (:mod:`kogata.search.closed_book`): no index is built and no
embedder opened; each question goes to the model with the same rules minus the passages (the model is always
asked). ``f1``, ``exact_match``, ``answer_contains`` and ``no_answer_acc`` are scored exactly as above;
``context_recall``, ``citation_accuracy`` and ``grounded_rate`` are reported as not applicable (and a KPI cannot
name them). Run both tasks on the same questions to see what retrieval adds.

For the efficiency probe, :meth:`RagQATask.prompts` builds the same
grounded prompts from BM25 passages, so the probe never loads the embedder and measures the generator alone.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import kogata.eval.metrics as M
from kogata.core.errors import KogataError
from kogata.data.grounding import judge
from kogata.eval.data import Record
from kogata.eval.tasks import N_SAMPLES, Progress, register_task_type
from kogata.runtimes.base import GenerateRequest
from kogata.search.answer import answer_language, answer_question, answer_request
from kogata.search.closed_book import answer_without_passages, closed_book_request, has_chat_template
from kogata.search.eval_task import DocumentSearchTask, _gold, group_means
from kogata.search.retrieve import Retriever
from kogata.search.vectors import DEFAULT_EMBEDDER

ANSWER_METRICS = ("f1", "exact_match", "answer_contains", "context_recall")
RAG_METRICS = (*ANSWER_METRICS, "citation_accuracy", "grounded_rate", "no_answer_acc")
for _spec in (
    M.MetricSpec("answer_contains", per_item=True, summary="rag_qa: the normalised gold answer appears in the answer"),
    M.MetricSpec("context_recall", per_item=True, summary="rag_qa: the gold answer appears in one of the passages given to the model"),
    M.MetricSpec("citation_accuracy", per_item=True, summary="rag_qa: share of answers whose cited passages contain the gold answer"),
    M.MetricSpec("grounded_rate", per_item=True, summary="rag_qa: share of answers supported by their passages (the grounding check)"),
):
    if _spec.name not in M.METRICS:
        M.register_metric(_spec)
_MARKER = re.compile(r"\[\d{1,3}\]")
LANGUAGES = ("auto", "ja", "en")
RETRIEVAL = ("search", "none")
NOT_WITHOUT_PASSAGES = ("context_recall", "citation_accuracy", "grounded_rate")
NO_PASSAGES = "retrieval: none (no passages given to the model)"


def _spaced(text: str) -> str:
    """Normalised tokens joined by single spaces and padded: `" 45 w "`; containment then respects word edges."""
    return " " + " ".join(M.tokenize(M.normalize_answer(text))) + " "


def contains(haystack: str, needle: str) -> bool:
    """Whether the normalised ``needle`` appears in the normalised ``haystack`` (whole words; characters for CJK)."""
    small = _spaced(needle)
    return small.strip() != "" and small in _spaced(haystack)


@register_task_type("rag_qa")
class RagQATask(DocumentSearchTask):
    metrics = RAG_METRICS
    primary = ("f1", "answer_contains", "citation_accuracy")
    runtime_kind = "lm"
    keys = (*DocumentSearchTask.search_keys, "embedder", "k", "max_tokens", "chat", "answer_language", "query_field",
            "answer_field", "group_field", "retrieval")  # fmt: skip
    required = ("data", "docs")

    def __init__(self, cfg: dict[str, Any], **kw: Any):
        super().__init__(cfg, **kw)
        self._setup_search()
        self.k = self._int("k", 3, minimum=1)
        self.max_tokens = self._int("max_tokens", 96, minimum=1)
        self.chat = self.cfg.get("chat", "auto")
        if not (isinstance(self.chat, bool) or self.chat == "auto"):
            raise KogataError(f"{self.where}: chat must be true or false, or auto, got {self.chat!r}", "chat: auto")
        self.retrieval = self._str("retrieval", "search")
        if self.retrieval not in RETRIEVAL:
            raise KogataError(f"{self.where}: retrieval must be search or none, got {self.retrieval!r}",
                              "retrieval: none answers without passages (the baseline)")  # fmt: skip
        self.answer_language = self._str("answer_language", "auto")
        if self.answer_language not in LANGUAGES:
            raise KogataError(f"{self.where}: answer_language must be one of {', '.join(LANGUAGES)}, got {self.answer_language!r}",
                              "answer_language: auto")  # fmt: skip
        self.query_field = self._str("query_field", "query")
        self.answer_field = self._str("answer_field", "answer")
        self.group_field = self._str("group_field", "group")
        embedder = self._str("embedder", DEFAULT_EMBEDDER)
        self.embedder_ref: str | None = None if self.mode == "bm25" or self.retrieval == "none" else embedder
        if self.embedder_ref is not None:
            self._check_embedder(self.embedder_ref)
        self.answers: list[list[str]] = []
        for i, r in enumerate(self.records):
            try:
                self.answers.append(_gold(r.get(self.answer_field)))
            except TypeError:
                raise KogataError(f"{self.where}: item {self.item_id(r, i)}: {self.answer_field} must be a string or a list of strings",
                                  'e.g. "answer": "45 W", or "" for a question the documents do not answer') from None  # fmt: skip

    def _extra_columns(self) -> list[str]:
        return [self.cfg.get("query_field") or "query", self.cfg.get("answer_field") or "answer"]

    def produced_metrics(self) -> list[str]:
        if self.retrieval == "none":
            return [m for m in self.metrics if m not in NOT_WITHOUT_PASSAGES]
        return list(self.metrics)

    def use_chat(self, runtime: Any) -> bool:
        """Chat messages or the plain prompt for this runtime (``chat: auto``: chat only with a real template)."""
        return has_chat_template(runtime) if self.chat == "auto" else bool(self.chat)

    # ---------------------------------------------------------------- retrieval
    def _check_embedder(self, ref: str) -> None:
        """At load time: ``ref`` is an embedder in the store, or the catalog's (pulled on first use)."""
        from kogata.artifacts.catalog import CATALOG
        from kogata.artifacts.store import Store

        art = Store().find(ref)
        if art is None and not (ref in CATALOG and CATALOG[ref].kind == "embedder"):
            raise KogataError(f"{self.where}: embedder {ref!r} is not in the store", f"pull it (`kogata models pull {DEFAULT_EMBEDDER}`), "
                              "name an embedder from `kogata models list`, or use mode: bm25")  # fmt: skip
        if art is not None and art.kind != "embedder":
            raise KogataError(f"{self.where}: embedder {ref!r} is a {art.kind}, not an embedder", f"e.g. embedder: {DEFAULT_EMBEDDER}")

    def _open_embedder(self) -> Any:
        from kogata.artifacts.store import Store
        from kogata.search.vectors import open_embedder, resolve_embedder

        if self.embedder_ref is None:
            return None
        try:
            art = resolve_embedder(Store(), self.embedder_ref)
        except KogataError as exc:
            raise KogataError(f"{self.where}: embedder: {exc.message}", exc.hint) from None
        return open_embedder(art)

    def _retrieve(self, questions: list[str], embedder: Any) -> tuple[list[list[Any]], Retriever]:
        retriever = self.new_retriever(embedder)
        mode = self.mode if embedder is not None else "bm25"
        return retriever.search_many(questions, k=self.k, mode=mode), retriever

    def _language(self, question: str) -> str:
        return answer_language(question) if self.answer_language == "auto" else self.answer_language

    # ---------------------------------------------------------------- running
    def _run(self, runtime: Any, items: list[tuple[int, Record]], progress: Progress) -> dict[str, Any]:
        if self.retrieval == "none":
            return self._run_closed_book(runtime, items, progress)
        questions = [str(r[self.query_field]) for _, r in items]
        use_chat = self.use_chat(runtime)
        embedder = self._open_embedder()
        try:
            rankings, retriever = self._retrieve(questions, embedder)
            embedder_info = embedder.info() if embedder is not None else None
        finally:
            if embedder is not None:
                embedder.close()
        per_item: dict[str, list[Any]] = {"id": [], **{m: [] for m in ANSWER_METRICS}}
        cited: dict[str, list[Any]] = {"id": [], "citation_accuracy": []}
        no_answer: dict[str, list[Any]] = {"id": [], "no_answer_acc": []}
        grounded: dict[str, list[Any]] = {"id": [], "grounded_rate": []}
        groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        status = {"answered": 0, "not_found": 0, "invalid_citations": 0}
        samples = []
        for done, ((i, record), question, hits) in enumerate(zip(items, questions, rankings), 1):
            item_id = self.item_id(record, i)
            golds = self.answers[i]
            ans = answer_question(runtime, question, hits, language=self._language(question), max_tokens=self.max_tokens,
                                  min_similarity=self.bar(retriever), use_chat=use_chat)  # fmt: skip
            status[ans.status] += 1
            status["invalid_citations"] += len(ans.invalid_citations)
            scores = self._score(ans, hits, golds)
            if ans.status == "answered":
                grounded["id"].append(item_id)
                ok = judge(_MARKER.sub(" ", ans.text), [h.chunk.text for h in hits], question).supported
                grounded["grounded_rate"].append(float(ok))
            if golds:
                per_item["id"].append(item_id)
                for m in ANSWER_METRICS:
                    per_item[m].append(scores[m])
                if "citation_accuracy" in scores:
                    cited["id"].append(item_id)
                    cited["citation_accuracy"].append(scores["citation_accuracy"])
            else:
                no_answer["id"].append(item_id)
                no_answer["no_answer_acc"].append(scores["no_answer_acc"])
            for m, v in scores.items():
                groups[str(record.get(self.group_field) or "all")][m].append(v)
            if len(samples) < N_SAMPLES:
                samples.append({"id": item_id, "prompt": question, "prediction": ans.text, "target": golds, "score": scores,
                                "status": ans.status, "cited": [c["source"] for c in ans.citations]})  # fmt: skip
            progress(self.name, done, len(items))
        metrics = {m: self._mean(per_item[m], "no question has a gold answer") for m in ANSWER_METRICS}
        metrics["citation_accuracy"] = self._mean(cited["citation_accuracy"], "the model answered no question that has a gold answer")
        metrics["grounded_rate"] = self._mean(grounded["grounded_rate"], "the model answered no question")
        metrics["no_answer_acc"] = self._mean(no_answer["no_answer_acc"], "no question without an answer in the data")
        by_group = group_means(groups)
        info = {**self.search_info(retriever), "mode": self.mode if embedder is not None else "bm25", "k": self.k,
                "embedder": embedder_info, "chat": self.chat, "prompt": "chat" if use_chat else "plain",
                "max_tokens": self.max_tokens, "answer_language": self.answer_language}  # fmt: skip
        return {"metrics": metrics, "per_item": per_item, "per_item_cited": cited, "per_item_no_answer": no_answer,
                "per_item_grounded": grounded,
                "groups": by_group, "answers": status, "retrieval": info, "samples": samples}  # fmt: skip

    def _run_closed_book(self, runtime: Any, items: list[tuple[int, Record]], progress: Progress) -> dict[str, Any]:
        """``retrieval: none``: every question answered without passages (module docstring)."""
        use_chat = self.use_chat(runtime)
        main = ("f1", "exact_match", "answer_contains")
        per_item: dict[str, list[Any]] = {"id": [], **{m: [] for m in main}}
        no_answer: dict[str, list[Any]] = {"id": [], "no_answer_acc": []}
        groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        status = {"answered": 0, "not_found": 0, "invalid_citations": 0}
        samples = []
        for done, (i, record) in enumerate(items, 1):
            item_id, golds, question = self.item_id(record, i), self.answers[i], str(record[self.query_field])
            ans = answer_without_passages(runtime, question, self._language(question), max_tokens=self.max_tokens, use_chat=use_chat)
            status[ans.status] += 1
            status["invalid_citations"] += len(ans.invalid_citations)
            scores = {m: v for m, v in self._score(ans, [], golds).items() if m in (*main, "no_answer_acc")}
            target = per_item if golds else no_answer
            target["id"].append(item_id)
            for m, v in scores.items():
                target[m].append(v)
                groups[str(record.get(self.group_field) or "all")][m].append(v)
            if len(samples) < N_SAMPLES:
                samples.append({"id": item_id, "prompt": question, "prediction": ans.text, "target": golds, "score": scores,
                                "status": ans.status, "cited": []})  # fmt: skip
            progress(self.name, done, len(items))
        metrics = {m: self._mean(per_item[m], "no question has a gold answer") for m in main}
        metrics |= {m: M.not_reported(NO_PASSAGES, 0) for m in NOT_WITHOUT_PASSAGES}
        metrics["no_answer_acc"] = self._mean(no_answer["no_answer_acc"], "no question without an answer in the data")
        metrics = {m: metrics[m] for m in self.metrics}
        by_group = group_means(groups)
        info = {"retrieval": "none", "k": 0, "embedder": None, "chat": self.chat, "prompt": "chat" if use_chat else "plain",
                "max_tokens": self.max_tokens, "answer_language": self.answer_language}  # fmt: skip
        return {"metrics": metrics, "per_item": per_item, "per_item_no_answer": no_answer, "groups": by_group, "answers": status,
                "retrieval": info, "samples": samples}  # fmt: skip

    def _mean(self, scores: list[float], reason: str) -> dict[str, Any]:
        return M.mean_with_ci(scores, seed=self.seed) if scores else M.not_reported(reason, 0)

    @staticmethod
    def _score(ans: Any, hits: list[Any], golds: list[str]) -> dict[str, float]:
        """One question's scores (see the module docstring)."""
        if not golds:
            return {"no_answer_acc": float(ans.status == "not_found")}
        answered = ans.status == "answered"
        text = _MARKER.sub(" ", ans.text) if answered else ""
        scores = {
            "f1": max(M.f1(text, g) for g in golds) if answered else 0.0,
            "exact_match": max(M.exact_match(text, g) for g in golds) if answered else 0.0,
            "answer_contains": float(answered and any(contains(text, g) for g in golds)),
            "context_recall": float(any(contains(h.chunk.text, g) for h in hits for g in golds)),
        }
        if answered and hits:
            cited_text = [hits[c["n"] - 1].chunk.text for c in ans.citations]
            scores["citation_accuracy"] = float(any(contains(t, g) for t in cited_text for g in golds))
        return scores

    def prompts(self, n: int) -> list[GenerateRequest]:
        """The first ``n`` grounded prompts, passages from BM25 (the probe times the generator, not the embedder)."""
        items = self.selected(n)
        questions = [str(r[self.query_field]) for _, r in items]
        use_chat = self.chat is not False  # no runtime here: auto times the chat messages (the runtime renders them)
        if self.retrieval == "none":
            return [closed_book_request(q, self._language(q), max_tokens=self.max_tokens, use_chat=use_chat) for q in questions]
        rankings, _ = self._retrieve(questions, None)
        return [answer_request(q, hits, self._language(q), max_tokens=self.max_tokens, use_chat=use_chat)
                for q, hits in zip(questions, rankings)]  # fmt: skip
