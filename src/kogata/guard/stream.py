"""Output checks on a token stream: send what is already safe, hold back only what could still become a hit.

``feed(piece)`` returns the text that may be sent now; ``finish()`` returns the rest and the verdict on the whole
answer. Streamable checks (pii, terms) with action ``redact`` or ``block`` run as the text grows: the tail that a
pattern could still complete (``03-12…``, ``東京都渋…``, the first letters of a blocked term) is held until it
is decided, so a redacted span never leaves in an earlier chunk. A ``block`` hit stops the stream: nothing more
is sent and ``finish()`` returns the safe reply. The whole answer is held when the policy could ``hold`` it,
or could ``block`` it on a check that needs the whole text (grounding, format, confidence, injection).
"""

from __future__ import annotations

from kogata.guard.policy import Policy, redact
from kogata.guard.verdict import GuardContext, Hit, Verdict

_MARGIN = 64  # characters re-scanned before the committed point (patterns look behind)
_LOOKAHEAD = 2  # a hit this close to the end may still change (patterns look ahead)


class StreamGuard:
    def __init__(self, policy: Policy, ctx: GuardContext | None = None):
        self.policy, self.ctx = policy, ctx or GuardContext()
        checks = policy.checks_on("output")
        self.live = [c for c in checks if c.check.streamable and c.action in ("redact", "block")]
        self.hold_all = any(c.action == "hold" or (c.action == "block" and not c.check.streamable) for c in checks)
        self._placeholders = policy._placeholders()
        self.buf = ""
        self.committed = 0  # characters of buf already decided and sent (in redacted form)
        self.blocked = False
        self._sent: list[str] = []

    def feed(self, piece: str) -> str:
        self.buf += piece
        if self.blocked or self.hold_all or not piece:
            return ""
        return self._advance(final=False)

    def finish(self) -> tuple[str, Verdict]:
        """(the text still to send, the verdict on the whole answer)."""
        verdict = self.policy.check_output(self.buf, self.ctx)
        if self.hold_all:
            return verdict.text, verdict
        if not self.blocked:
            rest = self._advance(final=True)
            if not self.blocked:
                return rest, verdict
        reply = self.policy.safe_reply.get(verdict.lang) or next(iter(self.policy.safe_reply.values()), "")
        return reply, _as_blocked(verdict, reply)

    @property
    def sent(self) -> str:
        return "".join(self._sent)

    def _advance(self, final: bool) -> str:
        text, n = self.buf, len(self.buf)
        win = max(0, self.committed - _MARGIN)
        window = text[win:]
        cut = n
        redactions: list[tuple[str, Hit]] = []
        for c in self.live:
            hits = [h for h in c.check.scan(window, self.ctx) if h.end + win > self.committed]
            if not final:
                cut = min(cut, win + c.check.hold_from(window))
            if hits and c.action == "block":
                self.blocked = True
                return ""
            redactions.extend((c.name, Hit(max(h.start + win, self.committed), h.end + win, h.type)) for h in hits)
        if not final:
            for _, h in redactions:
                if h.end >= n - _LOOKAHEAD or h.start < cut < h.end:
                    cut = min(cut, h.start)
        if cut <= self.committed:
            return ""
        spans = [(name, h) for name, h in redactions if h.end <= cut]
        out = _redact_slice(text, self.committed, cut, spans, self._placeholders)
        self.committed = cut
        self._sent.append(out)
        return out


def _redact_slice(text: str, start: int, end: int, spans, placeholders: dict[str, str]) -> str:
    from kogata.guard.verdict import CheckResult

    by_check: dict[str, list[Hit]] = {}
    for name, h in spans:
        by_check.setdefault(name, []).append(Hit(h.start - start, h.end - start, h.type))
    results = [CheckResult(name, "redact", True, hits) for name, hits in by_check.items()]
    return redact(text[start:end], results, placeholders)


def _as_blocked(verdict: Verdict, reply: str) -> Verdict:
    verdict.action, verdict.text = "block", reply
    return verdict
