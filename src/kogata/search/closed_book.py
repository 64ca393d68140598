"""The no-retrieval baseline of ``rag_qa`` (``retrieval: none``): the same question, the same model, the same
answer-prompt language and "not in the documents" rule — but no passages.

What retrieval adds is the difference between a ``rag_qa`` task and its ``retrieval: none`` twin on the same
questions: F1 / exact match / answer_contains are scored the same way against the same gold answers, and
``no_answer_acc`` counts the same refusal sentence. Nothing is cited here (there is nothing to cite): every
``[n]`` the model writes is removed and counted as an invalid citation, and citation accuracy, context recall and
the grounding rate are not applicable.

* :func:`closed_book_messages` / :func:`closed_book_prompt` — the chat messages / the one plain prompt (stop
  sequences as the grounded plain prompt's), :func:`closed_book_request` — the request the probe times;
* :func:`answer_without_passages` — the model's answer, ``not_found`` when it says the documents do not hold it.
* :func:`has_chat_template` — whether a runtime renders a real chat template (``chat: auto`` sends base models
  such as Gemma-3-270M the plain completion prompt instead of a ``User:``/``Assistant:`` transcript).
"""

from __future__ import annotations

from typing import Any

from kogata.runtimes.base import GenerateRequest
from kogata.search.answer import LABELS, NOT_FOUND, NOT_FOUND_RE, Answer, parse_citations

SYSTEM_NO_PASSAGES = {
    "ja": ("あなたは社内の質問に答えるアシスタントです。次の規則を守ってください。\n"
           "1. 簡潔に日本語で答える。\n"
           "2. 答えがわからなければ「資料に記載がありません。」とだけ答える。推測で答えない。"),
    "en": ("You answer questions about the company. Rules:\n"
           "1. Answer briefly in English.\n"
           "2. If you do not know the answer, reply exactly \"This is not in the documents.\" Never guess."),
}  # fmt: skip


def closed_book_messages(question: str, language: str) -> list[dict[str, str]]:
    _, q, _ = LABELS[language]
    return [{"role": "system", "content": SYSTEM_NO_PASSAGES[language]}, {"role": "user", "content": f"{q}: {question.strip()}"}]


def closed_book_prompt(question: str, language: str) -> str:
    _, q, a = LABELS[language]
    return f"{SYSTEM_NO_PASSAGES[language]}\n\n{q}: {question.strip()}\n{a}:"


def closed_book_request(question: str, language: str, *, max_tokens: int = 200, use_chat: bool = True) -> GenerateRequest:
    if use_chat:
        return GenerateRequest(messages=closed_book_messages(question, language), max_tokens=max_tokens, stop=[])
    return GenerateRequest(prompt=closed_book_prompt(question, language), max_tokens=max_tokens,
                           stop=["\n\n", f"\n{LABELS[language][1]}:"])  # fmt: skip


def answer_without_passages(runtime: Any, question: str, language: str, *, max_tokens: int = 200, use_chat: bool = True) -> Answer:
    """The model's answer to ``question`` with no passages (the model is always asked: there is no retrieval to
    judge weak)."""
    messages = closed_book_messages(question, language)
    if use_chat:
        raw = runtime.chat(messages, max_tokens=max_tokens, stop=None)
    else:
        (raw,) = runtime.generate([closed_book_request(question, language, max_tokens=max_tokens, use_chat=False)])
    text, _, invalid = parse_citations(raw or "", 0)  # no passage: every [n] is removed and counted
    if not text or NOT_FOUND_RE.search(text):
        return Answer(question, language, NOT_FOUND[language], "not_found", invalid_citations=invalid, prompt=messages)
    return Answer(question, language, text, "answered", invalid_citations=invalid, prompt=messages)


def has_chat_template(runtime: Any) -> bool:
    """Whether ``runtime`` renders the model's own chat template: llama.cpp's GGUF ``tokenizer.chat_template``, the
    torch tokenizer's ``chat_template``, or a runtime's ``has_chat_template``; True when it cannot tell."""
    flag = getattr(runtime, "has_chat_template", None)
    if isinstance(flag, bool):
        return flag
    if hasattr(runtime, "_chat_template"):  # llamacpp runtime
        return bool(runtime._chat_template)
    tokenizer = getattr(runtime, "tokenizer", None)
    if tokenizer is not None:
        return bool(getattr(tokenizer, "chat_template", None))
    return True
