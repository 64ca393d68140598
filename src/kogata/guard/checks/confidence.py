"""``confidence``: the answer's mean token log-probability (from the engine) is below ``min_mean_logprob``."""

from __future__ import annotations

import math

from kogata.guard.checks.registry import Check, CheckOptions, register_check
from kogata.guard.verdict import CheckResult, GuardContext, Hit


class ConfidenceOptions(CheckOptions):
    min_mean_logprob: float = -1.5
    min_tokens: int = 1


@register_check("confidence")
class ConfidenceCheck(Check):
    Options = ConfidenceOptions

    def evaluate(self, text: str, ctx: GuardContext, action: str) -> CheckResult:
        lps = [x for x in (ctx.logprobs or []) if x is not None and math.isfinite(x)]
        if len(lps) < max(1, self.options.min_tokens):
            return CheckResult(self.name, action, False, [], None)
        mean = sum(lps) / len(lps)
        fired = mean < self.options.min_mean_logprob
        return CheckResult(self.name, action, fired, [Hit(0, len(text), "LOW_CONFIDENCE", mean)] if fired else [], mean)

    def scan(self, text: str, ctx: GuardContext) -> list[Hit]:
        return self.evaluate(text, ctx, "flag").hits
