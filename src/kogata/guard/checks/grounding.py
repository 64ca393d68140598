"""``grounding``: the facts in an answer must come from the retrieved passages (the test itself:
:func:`kogata.data.grounding.judge`, shared with the ``rag_qa`` task). Without passages the check does not run."""

from __future__ import annotations

from kogata.data.grounding import checkable_items, judge
from kogata.guard.checks.registry import Check, CheckOptions, register_check
from kogata.guard.verdict import CheckResult, GuardContext, Hit


class GroundingOptions(CheckOptions):
    min_word_support: float = 0.5
    min_words: int = 2  # judge content words only when the answer has at least this many
    ignore_words: list[str] = []


@register_check("grounding")
class GroundingCheck(Check):
    Options = GroundingOptions

    def items(self, text: str):
        """The folded text and (type, start, end, item) of every checkable item, in folded coordinates."""
        return checkable_items(text, self.options.ignore_words)

    def evaluate(self, text: str, ctx: GuardContext, action: str) -> CheckResult:
        if not ctx.passages:
            return CheckResult(self.name, action, False, [], None)
        g = judge(text, list(ctx.passages), ctx.question, min_word_support=self.options.min_word_support,
                  min_words=self.options.min_words, ignore_words=self.options.ignore_words)
        fired = not g.supported
        hits = [Hit(*g.folded.span(a, b), kind, 0.0) for kind, a, b, _ in g.unsupported if kind != "WORD" or fired] if g.folded else []
        return CheckResult(self.name, action, fired, hits, g.score)

    def scan(self, text: str, ctx: GuardContext) -> list[Hit]:
        return self.evaluate(text, ctx, "flag").hits
