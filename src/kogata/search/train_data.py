"""Training data for a grounded-answer generator: question → retrieved passages → short answer with its ``[n]``.

A small model asked to answer from passages tends to copy a passage, ramble, or invent; none of the shipped ones
writes ``[n]`` citations (``benchmarks/rag.py``). LoRA on examples in the exact form the model will see at
inference teaches the form: each example is the prompt :func:`kogata.search.answer.plain_prompt` builds from the
passages the retriever really returns for the question, and as the target the gold answer followed by the
number of the first passage that contains it — or "資料に記載がありません。" / "This is not in the documents."
when no retrieved passage contains the answer (or the question has none), so the model learns not to guess.

Input records: ``{"query" (or "question"), "answer"}`` (``answer`` empty or missing: not in the documents),
optionally ``id``. Output: ``{"id", "prompt", "completion", "cited", "source"}`` lines, a ``prompt``/``completion``
dataset for the ``lora`` method with ``plain_prompt=true`` (base models sent one plain completion prompt: the
``chat: auto`` rule of ``rag_qa`` and ``kogata ask``).

Keep the questions of the evaluation out of this data (``benchmarks/rag_lora.py`` holds out whole documents).
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kogata.core.errors import KogataError
from kogata.search.answer import NOT_FOUND, answer_language, plain_prompt


def _norm(text: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text)).lower()


@dataclass
class GroundedStats:
    examples: int = 0
    cited: int = 0  # the answer is in a retrieved passage: "answer [n]"
    not_retrieved: int = 0  # an answer exists but no retrieved passage holds it: trained as "not in the documents"
    no_answer: int = 0  # the question has no answer in the documents

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def target(answer: str, hits: list[Any], language: str) -> tuple[str, int | None]:
    """(completion, cited passage number or None) for one question."""
    gold = (answer or "").strip()
    if gold:
        key = _norm(gold)
        for n, h in enumerate(hits, 1):
            if key and key in _norm(h.chunk.text):
                return f"{gold} [{n}]", n
    return NOT_FOUND[language], None


def grounded_examples(retriever: Any, records: list[dict[str, Any]], *, k: int = 3, mode: str | None = None,
                      language: str = "auto", query_field: str = "query") -> tuple[list[dict[str, Any]], GroundedStats]:  # fmt: skip
    """One training example per record, retrieving with ``retriever`` as the answer step will."""
    if language not in ("auto", "ja", "en"):
        raise KogataError(f"language must be auto, ja or en, got {language!r}", "e.g. --language auto")
    questions = []
    for i, r in enumerate(records):
        q = r.get(query_field, r.get("question"))
        if not isinstance(q, str) or not q.strip():
            raise KogataError(f"record {i + 1}: no {query_field!r} (or 'question') text", 'each line needs {"query": "...", "answer": "..."}')
        questions.append(q)
    rankings = retriever.search_many(questions, k, mode)
    out, stats = [], GroundedStats()
    for i, (r, q, hits) in enumerate(zip(records, questions, rankings)):
        lang = answer_language(q) if language == "auto" else language
        answer = str(r.get("answer") or "")
        completion, cited = target(answer, hits, lang)
        stats.examples += 1
        if cited is not None:
            stats.cited += 1
        elif answer.strip():
            stats.not_retrieved += 1
        else:
            stats.no_answer += 1
        out.append({"id": str(r.get("id", i + 1)), "prompt": plain_prompt(q, hits, lang), "completion": completion, "cited": cited,
                    "source": hits[cited - 1].chunk.source if cited else None})  # fmt: skip
    return out, stats


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> None:
    """Write ``rows`` to ``path`` whole or not at all."""
    from kogata.core.io import atomic_text_file

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_text_file(Path(path)) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
