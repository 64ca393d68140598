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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kogata.serve.errors import bad_request


@dataclass
class Grounding:
    holder: Any  # routes.search.SearchIndexes
    index: str
    k: int
    mode: str | None
    hits: list[Any] = field(default_factory=list)
    language: str = "en"
    used_mode: str | None = None
    weak: bool = False

    def prepare(self, g: Any) -> None:
        """Between the input checks and the engine (``Generation.before_submit``; runs in a worker thread)."""
        from kogata.search.answer import NOT_FOUND, answer_language, build_messages
        from kogata.search.retrieve import is_weak
        from kogata.serve.routes.search import retrieve

        messages = g.gen.messages or []
        users = [i for i, m in enumerate(messages) if m["role"] == "user"]
        if not users:
            raise bad_request("retrieval needs a user message to search for", param="messages")
        last = users[-1]
        question = messages[last]["content"]
        self.language = answer_language(question)
        index, self.used_mode, self.hits = retrieve(self.holder, self.index, question, self.k, self.mode)
        self.weak = is_weak(self.hits)
        g.ctx.extra["retrieval"] = {"index": index.name, "artifact": index.artifact.id, "chunks": [h.chunk.chunk_id for h in self.hits]}
        if self.weak:
            g.canned, g.canned_finish = NOT_FOUND[self.language], "stop"
            return
        system, user = build_messages(question, self.hits, self.language)
        earlier = [m for i, m in enumerate(messages[:last]) if m["role"] != "system"]
        g.gen.messages = [system, *earlier, user, *messages[last + 1:]]
        g.ctx.messages = g.gen.messages
        g.ctx.extra["passages"] = [h.chunk.text for h in self.hits]

    def response_fields(self, text: str) -> dict[str, Any]:
        """``citations`` and ``retrieval`` for the response body (or the last stream chunk)."""
        from kogata.search.answer import parse_citations

        _, cited, invalid = parse_citations(text or "", len(self.hits))
        citations = [{"n": n, "chunk_id": self.hits[n - 1].chunk.chunk_id, "source": self.hits[n - 1].chunk.source,
                      "title": self.hits[n - 1].chunk.title} for n in cited] if not self.weak else []
        return {"citations": citations,
                "retrieval": {"index": self.index, "mode": self.used_mode, "weak": self.weak, "language": self.language,
                              "passages": [{"n": n, **h.to_dict()} for n, h in enumerate(self.hits, 1)],
                              "invalid_citations": invalid}}
