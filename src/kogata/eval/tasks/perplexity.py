"""``perplexity``: rolling log-likelihood of whole documents — token/word perplexity and bits per byte.

The definitions are lm-evaluation-harness's (``loglikelihood_rolling``; word = ``re.split(r"\\s+")``), with
two differences, both recorded in the result:

* ``window``: documents are scored in disjoint windows of the runtime's ``max_length`` tokens (kogata's
  default: the model's context capped at 2048; lm-eval's HF backend uses the full context). A document no
  longer than the window is scored identically under both; ``docs_over_window`` counts those that are
  longer (their figure depends on the window).
* Japanese/CJK text: whitespace does not delimit words there, so ``word_perplexity`` is not reported
  (``value`` null and a ``reason``) when the task says ``language: ja`` or — without ``language`` — more than
  :data:`kogata.eval.metrics.CJK_SHARE_THRESHOLD` of the documents' characters are CJK/kana.
  ``bits_per_byte`` and ``token_perplexity`` are reported for every language.
"""

from __future__ import annotations

from typing import Any

import kogata.eval.metrics as M
from kogata.core.errors import KogataError
from kogata.eval.data import Record
from kogata.eval.tasks import N_SAMPLES, Progress, Task, register_task_type, text_of
from kogata.runtimes.base import GenerateRequest

LANGUAGES = ("en", "ja")


@register_task_type("perplexity")
class PerplexityTask(Task):
    """Rolling log-likelihood of whole documents: token/word perplexity and bits per byte (lm-eval definitions)."""

    metrics = tuple(M.PERPLEXITY_METRICS)
    primary = ("bits_per_byte", "token_perplexity")
    keys = ("language",)
    required = ("data",)
    CHUNK = 8

    def _default_fields(self) -> dict[str, str]:
        return {"text": "text"}

    def __init__(self, cfg: dict[str, Any], **kw: Any):
        super().__init__(cfg, **kw)
        if "text" not in self.fields:
            raise KogataError(f"{self.where}: fields needs a 'text' entry naming the document column", "e.g. fields: {text: body}")
        language = self._str("language", None)
        if language is not None and language not in LANGUAGES:
            raise KogataError(f"{self.where}: language {language!r} is not supported", f"use one of: {', '.join(LANGUAGES)}")
        self.text_language = language
        self.words_countable, self.no_words_reason = M.words_countable([self.text(r) for r in self.records], language)

    def produced_metrics(self) -> list[str]:
        return [m for m in self.metrics if self.words_countable or M.PERPLEXITY_METRICS[m].denominator != "n_words"]

    def text(self, record: Record) -> str:
        return text_of(record[self.fields["text"]])

    def _run(self, runtime: Any, items: list[tuple[int, Record]], progress: Progress) -> dict[str, Any]:
        texts = [self.text(r) for _, r in items]
        results = []
        for lo in range(0, len(texts), self.CHUNK):
            results += runtime.loglikelihood_rolling(texts[lo : lo + self.CHUNK])
            progress(self.name, min(lo + self.CHUNK, len(texts)), len(texts))
        per_item: dict[str, list[Any]] = {
            "id": [self.item_id(r, i) for i, r in items],
            "logprob": [r.logprob for r in results],
            "n_tokens": [r.n_tokens for r in results],
            "n_bytes": [M.count_bytes(t) for t in texts],
        }
        if self.words_countable:
            per_item["n_words"] = [M.count_words(t) for t in texts]
        metrics: dict[str, Any] = {}
        for name, ratio in M.PERPLEXITY_METRICS.items():
            if ratio.denominator in per_item:
                metrics[name] = M.corpus_metric_with_ci(name, per_item["logprob"], per_item[ratio.denominator], seed=self.seed)
            else:
                metrics[name] = M.not_reported(self.no_words_reason or "not countable", len(items))
        window = getattr(runtime, "max_length", None)
        window = window if isinstance(window, int) else None
        samples = [{"id": doc_id, "prompt": t[:200], "prediction": None, "target": None,
                    "score": {"logprob": lp, "n_tokens": nt}}
                   for doc_id, t, lp, nt in zip(per_item["id"][:N_SAMPLES], texts, per_item["logprob"], per_item["n_tokens"])]  # fmt: skip
        return {
            "metrics": metrics,
            "per_item": per_item,
            "window": window,
            "docs_over_window": None if window is None else sum(n > window for n in per_item["n_tokens"]),
            "samples": samples,
        }

    def prompts(self, n: int) -> list[GenerateRequest]:
        out = []
        for _, r in self.selected(n):
            words = self.text(r).split(" ")
            out.append(GenerateRequest(prompt=" ".join(words[:48]) if len(words) > 1 else self.text(r)[:160], max_tokens=32))
        return out
