"""Chat completions grounded in a document index (社内文書検索 in the chat API).

A chat request with ``"retrieval": {"index": "support", "k": 4}`` (an extension field; the ``openai`` client sends
it with ``extra_body``) is answered from the company's documents:

1. the input checks run on the user's messages as usual (a blocked question never reaches the index);
2. the last user message is the query: the index ranks its chunks (``/v1/search``'s code, hybrid by default);
3. weak or empty retrieval → the answer is "資料に記載がありません。 / This is not in the documents." without
   calling the model (never an invented answer);
4. otherwise the last user message is replaced by the passages + the question, under kogata's grounded-answer
   system prompt (ja or en, by the question's language; :mod:`kogata.search.answer`), and the passages go to the
   output checks (the policy's ``grounding`` check sees exactly what the model saw);
5. the response carries ``citations``: each valid ``[n]`` of the answer mapped to its chunk (source document,
   chunk id, title), and ``retrieval``: index, mode, the passages offered, invalid markers if any.

The answer text is sent and audited as the model wrote it (the audit row is what the client got).

The steps themselves — :func:`find_passages` (retrieval, language, weak) and :class:`Passages` (the grounded prompt,
the numbered passages, the citations) — are shared with the web UI's grounded answer
(:mod:`kogata.serve.ui.pages_playground`), which sends the same prompt through the same chat-completions path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kogata.serve.errors import bad_request


# ---- the steps both grounded paths share (chat completions with "retrieval", the UI playground) ----------------
@dataclass
class Passages:
    """What one question retrieved from an index: the index, the mode used, the ranked hits, the answer's
    language (by the question) and whether retrieval was weak (then the answer is "not in the documents")."""

    index: Any  # search.index.SearchIndex
    mode: str | None
    hits: list[Any]
    language: str
    weak: bool

    def messages(self, question: str, earlier: list[dict[str, str]] | None = None) -> list[dict[str, str]]:
        """The grounded prompt: kogata's system rules, ``earlier`` turns, then the numbered passages + the question."""
        from kogata.search.answer import build_messages

        system, user = build_messages(question, self.hits, self.language)
        return [system, *(earlier or []), user]

    def numbered(self) -> list[dict[str, Any]]:
        """Every passage offered to the model, as ``{"n": 1, ...hit}``."""
        from kogata.search.answer import numbered

        return numbered(self.hits)

    def cite(self, text: str) -> tuple[str, list[dict[str, Any]], list[int]]:
        """(text with invalid markers removed, each valid ``[n]`` mapped to its chunk, invalid numbers); no
        citations after weak retrieval (the canned answer cites nothing)."""
        from kogata.search.answer import citations_of, parse_citations

        cleaned, cited, invalid = parse_citations(text or "", len(self.hits))
        return cleaned, citations_of(self.hits, cited) if not self.weak else [], invalid

    def answer(self, question: str, text: str | None) -> Any:
        """The answer as a :class:`kogata.search.answer.Answer` (what the UI shows; ``text``: the model's words, None
        when it was not asked): "not in the documents" after weak retrieval, otherwise
        :func:`kogata.search.answer.answer_from_text` (the rule of ``kogata ask``)."""
        from kogata.search.answer import NOT_FOUND, Answer, answer_from_text

        if self.weak:
            return Answer(question, self.language, NOT_FOUND[self.language], "not_found", passages=self.numbered())
        return answer_from_text(question, self.language, text, self.hits)


def find_passages(holder: Any, index: str, question: str, k: int, mode: str | None = None) -> Passages:
    """Rank index ``index``'s chunks for ``question`` as ``/v1/search`` does (:func:`kogata.serve.routes.search.retrieve`:
    hybrid by default, BM25 without an embedder; APIError 4xx/503 for an unknown index or mode). ``holder`` is the
    app's :class:`~kogata.serve.routes.search.SearchIndexes`. Runs in a worker thread (it may embed the query)."""
    from kogata.search.answer import answer_language
    from kogata.search.retrieve import is_weak
    from kogata.search.space import default_min_similarity
    from kogata.serve.routes.search import retrieve

    found, used_mode, hits = retrieve(holder, index, question, k, mode)
    return Passages(found, used_mode, hits, answer_language(question), is_weak(hits, default_min_similarity(found.space)))


# ---- chat completions with "retrieval" ------------------------------------------------------------------------
@dataclass
class Grounding:
    holder: Any  # routes.search.SearchIndexes
    index: str
    k: int
    mode: str | None
    found: Passages = field(default_factory=lambda: Passages(None, None, [], "en", False))  # set by prepare()

    def prepare(self, g: Any) -> None:
        """Between the input checks and the engine (``Generation.before_submit``; runs in a worker thread)."""
        from kogata.search.answer import NOT_FOUND

        messages = g.gen.messages or []
        users = [i for i, m in enumerate(messages) if m["role"] == "user"]
        if not users:
            raise bad_request("retrieval needs a user message to search for", param="messages")
        last = users[-1]
        question = messages[last]["content"]
        found = self.found = find_passages(self.holder, self.index, question, self.k, self.mode)
        g.ctx.extra["retrieval"] = {"index": found.index.name, "artifact": found.index.artifact.id, "chunks": [h.chunk.chunk_id for h in found.hits]}
        if found.weak:
            g.canned, g.canned_finish = NOT_FOUND[found.language], "stop"
            return
        earlier = [m for m in messages[:last] if m["role"] != "system"]
        g.gen.messages = [*found.messages(question, earlier), *messages[last + 1:]]
        g.ctx.messages = g.gen.messages
        g.ctx.extra["passages"] = [h.chunk.text for h in found.hits]

    def response_fields(self, text: str) -> dict[str, Any]:
        """``citations`` and ``retrieval`` for the response body (or the last stream chunk)."""
        found = self.found
        _, citations, invalid = found.cite(text)
        return {"citations": citations,
                "retrieval": {"index": self.index, "mode": found.mode, "weak": found.weak, "language": found.language,
                              "passages": found.numbered(), "invalid_citations": invalid}}
