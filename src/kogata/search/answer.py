"""Grounded answers: a prompt that holds the retrieved passages as ``[1]``, ``[2]`` …, and the answer's citations
mapped back to their sources.

* :func:`answer_language` — ``ja`` when a third of the question's letters are kana/kanji, else ``en``.
* :func:`build_messages` — the chat messages (system rules + numbered passages + question) in that language;
  :func:`answer_request` — that prompt as the one generation request the model gets (what the probe times).
* :func:`parse_citations` — every ``[n]`` (also ``［n］``, ``[1, 2]``, ``[1][2]``) in the answer; markers that
  point to no retrieved passage are removed from the text and reported, so every ``[n]`` left points to a chunk.
* :func:`answer_question` — the whole step: when retrieval is empty or weak (:func:`kogata.search.retrieve.is_weak`)
  the answer is :data:`NOT_FOUND` without calling the model; otherwise the model's answer with its citations.
  A model that itself says the documents do not hold the answer gets the same ``not_found`` status.

The model is any runtime with ``chat(messages, max_tokens, stop)`` (the runtimes render the model's chat template,
or a plain transcript for base models); ``use_chat=False`` sends the same text as one plain prompt instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from kogata.runtimes.base import GenerateRequest
from kogata.search.retrieve import MIN_SIMILARITY, Hit, is_weak

NOT_FOUND = {"ja": "資料に記載がありません。", "en": "This is not in the documents."}
NOT_FOUND_RE = re.compile(r"資料に(?:は)?(?:記載|情報)が(?:ありません|ない)|not (?:in|covered by|mentioned in) the (?:documents|passages)",
                           re.IGNORECASE)  # fmt: skip
SYSTEM = {
    "ja": ("あなたは社内資料だけに基づいて答えるアシスタントです。次の規則を守ってください。\n"
           "1. 下の資料に書かれていることだけを使って、簡潔に日本語で答える。\n"
           "2. 根拠にした資料の番号を、文の終わりに [1] のように付ける。\n"
           "3. 資料に答えがなければ「資料に記載がありません。」とだけ答える。推測で答えない。"),
    "en": ("You answer only from the company documents below. Rules:\n"
           "1. Use only what the passages say; answer briefly in English.\n"
           "2. Cite the passage you used at the end of the sentence, like [1].\n"
           "3. If the passages do not contain the answer, reply exactly \"This is not in the documents.\" Never guess."),
}  # fmt: skip
LABELS = {"ja": ("資料", "質問", "回答"), "en": ("Passages", "Question", "Answer")}
_CITE = re.compile(r"[\[［]\s*(\d{1,3}(?:\s*[,，、]\s*\d{1,3})*)\s*[\]］]")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")
_LETTER = re.compile(r"[A-Za-z\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")


@dataclass
class Answer:
    question: str
    language: str
    text: str
    status: str  # "answered" | "not_found" (nothing relevant retrieved, or the model said so)
    citations: list[dict[str, Any]] = field(default_factory=list)  # [{n, chunk_id, source, title}] for each [n] used
    passages: list[dict[str, Any]] = field(default_factory=list)  # every passage given to the model, numbered
    invalid_citations: list[int] = field(default_factory=list)  # [n] markers removed (no such passage)
    prompt: list[dict[str, str]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"question": self.question, "language": self.language, "answer": self.text, "status": self.status,
                "citations": self.citations, "invalid_citations": self.invalid_citations, "passages": self.passages}  # fmt: skip


def answer_language(question: str) -> str:
    letters = _LETTER.findall(question)
    if not letters:
        return "en"
    return "ja" if len(_CJK.findall(question)) / len(letters) >= 1 / 3 else "en"


def passage_block(hits: list[Hit], max_chars: int = 700) -> str:
    lines = []
    for n, h in enumerate(hits, 1):
        text = h.chunk.text if len(h.chunk.text) <= max_chars else h.chunk.text[:max_chars] + "…"
        lines.append(f"[{n}] ({h.chunk.source} — {h.chunk.title})\n{text}")
    return "\n\n".join(lines)


def build_messages(question: str, hits: list[Hit], language: str) -> list[dict[str, str]]:
    docs, q, _ = LABELS[language]
    user = f"{docs}:\n{passage_block(hits)}\n\n{q}: {question.strip()}"
    return [{"role": "system", "content": SYSTEM[language]}, {"role": "user", "content": user}]


def plain_prompt(question: str, hits: list[Hit], language: str) -> str:
    docs, q, a = LABELS[language]
    return f"{SYSTEM[language]}\n\n{docs}:\n{passage_block(hits)}\n\n{q}: {question.strip()}\n{a}:"


def answer_request(question: str, hits: list[Hit], language: str, *, max_tokens: int = 200, use_chat: bool = True) -> GenerateRequest:
    """The generation request :func:`answer_question` sends for these passages (chat messages, or the plain prompt
    with its stop sequences): what the ``rag_qa`` task hands the efficiency probe to time."""
    if use_chat:
        return GenerateRequest(messages=build_messages(question, hits, language), max_tokens=max_tokens, stop=[])
    return GenerateRequest(prompt=plain_prompt(question, hits, language), max_tokens=max_tokens,
                           stop=["\n\n", f"\n{LABELS[language][1]}:"])  # fmt: skip


def parse_citations(text: str, n_passages: int) -> tuple[str, list[int], list[int]]:
    """(text with invalid markers removed, cited passage numbers in order of first use, invalid numbers)."""
    cited: list[int] = []
    invalid: list[int] = []

    def repl(m: re.Match) -> str:
        nums = [int(x) for x in re.split(r"\s*[,，、]\s*", m.group(1))]
        good = [n for n in nums if 1 <= n <= n_passages]
        invalid.extend(n for n in nums if n not in good)
        for n in good:
            if n not in cited:
                cited.append(n)
        return "".join(f"[{n}]" for n in good)

    cleaned = _CITE.sub(repl, text)
    cleaned = re.sub(r"[ \t]+([。．.,，、])", r"\1", cleaned).strip()
    return cleaned, cited, invalid


def numbered(hits: list[Hit]) -> list[dict[str, Any]]:
    """Every passage given to the model, as ``{"n": 1, ...hit}``."""
    return [{"n": n, **h.to_dict()} for n, h in enumerate(hits, 1)]


def citations_of(hits: list[Hit], numbers: list[int]) -> list[dict[str, Any]]:
    """``{n, chunk_id, source, title}`` of passage ``n`` (1-based) of ``hits``, for each of ``numbers``."""
    return [{"n": n, "chunk_id": hits[n - 1].chunk.chunk_id, "source": hits[n - 1].chunk.source,
             "title": hits[n - 1].chunk.title} for n in numbers]  # fmt: skip


def answer_from_text(question: str, lang: str, raw: str | None, hits: list[Hit],
                     prompt: list[dict[str, str]] | None = None) -> Answer:  # fmt: skip
    """The model's words ``raw`` as an :class:`Answer`: invalid ``[n]`` removed; "not in the documents" for an empty
    answer or one that says so without citing; otherwise the text with its citations."""
    text, cited, invalid = parse_citations(raw or "", len(hits))
    if not text or NOT_FOUND_RE.search(text) and not cited:
        return Answer(question, lang, NOT_FOUND[lang], "not_found", passages=numbered(hits), invalid_citations=invalid, prompt=prompt)
    return Answer(question, lang, text, "answered", citations_of(hits, cited), numbered(hits), invalid, prompt)


def answer_question(runtime: Any, question: str, hits: list[Hit], *, language: str | None = None, max_tokens: int = 200,
                    min_similarity: float = MIN_SIMILARITY, use_chat: bool = True) -> Answer:  # fmt: skip
    """Answer ``question`` from ``hits`` with ``runtime`` (see the module docstring)."""
    lang = language or answer_language(question)
    if is_weak(hits, min_similarity):
        return Answer(question, lang, NOT_FOUND[lang], "not_found", passages=numbered(hits))
    messages = build_messages(question, hits, lang)
    if use_chat:  # runtimes render the model's chat template, or a plain transcript for base models
        raw = runtime.chat(messages, max_tokens=max_tokens, stop=None)
    else:
        (raw,) = runtime.generate([answer_request(question, hits, lang, max_tokens=max_tokens, use_chat=False)])
    return answer_from_text(question, lang, raw, hits, messages)
