"""A deployment's guard policy: which checks run on input and output, and what each one's hits cause.

```yaml
checks:
  - check: pii
    on: [input, output]
    action: redact          # allow | flag | redact | hold | block
    types: [EMAIL, PHONE]   # the check's own options
  - check: terms
    on: [output]
    action: block
    terms: {competitors: [ライバル電機, RivalCorp]}
safe_reply:
  en: "Sorry, I can't help with that here."
  ja: "申し訳ありませんが、その内容にはお答えできません。"
review:                     # what else goes to the human review queue when served (`kogata serve --policy`)
  sample_rate: 0.01         # a random 1% of answers
  low_confidence: -2.0      # answers whose mean token log-probability is below this
```

Loading validates everything and fails with one line naming the key (``checks[1].action``); a policy that
loads can only fail at run time on a bug. The verdict takes the most severe action among fired checks
(block > hold > redact > flag > allow); redactions apply whatever the final action, and a blocked text is
replaced by the safe reply in the asker's language.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kogata.core.errors import KogataError
from kogata.data.filters import detect_language
from kogata.guard.checks import CHECKS, Check
from kogata.guard.verdict import ACTIONS, WHERE, CheckResult, GuardContext, Verdict, most_severe

_TOP_KEYS = ("version", "name", "checks", "safe_reply", "review")
_REVIEW_KEYS = ("sample_rate", "low_confidence")
_ENTRY_KEYS = ("check", "on", "action")


@dataclass(frozen=True)
class PolicyCheck:
    check: Check
    on: frozenset[str]
    action: str

    @property
    def name(self) -> str:
        return self.check.name


class Policy:
    def __init__(self, checks: list[PolicyCheck], safe_reply: dict[str, str], source: str = "policy",
                 review: dict[str, Any] | None = None):
        self.checks, self.safe_reply, self.source = checks, safe_reply, source
        self.review = review or {}  # {"sample_rate": float, "low_confidence": float | None} for the review queue

    # ---- loading ---------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> Policy:
        p = Path(path)
        if not p.is_file():
            raise KogataError(f"policy file {p} not found", "pass a YAML file such as examples/policy-support-desk.yaml")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise KogataError(f"{p}: not valid YAML{where}", "fix the syntax (indentation, quotes, colons)") from None
        return cls.from_dict(data, source=str(p))

    @classmethod
    def from_dict(cls, data: Any, source: str = "policy") -> Policy:
        def err(key: str, msg: str, hint: str | None = None) -> KogataError:
            return KogataError(f"{source}: {key}: {msg}", hint)

        if not isinstance(data, dict):
            raise err("(top level)", "a policy is a mapping with a 'checks:' list", "see examples/policy-support-desk.yaml")
        for key in data:
            if key not in _TOP_KEYS:
                raise err(str(key), "unknown key", _did_you_mean(str(key), _TOP_KEYS) or f"known keys: {', '.join(_TOP_KEYS)}")
        entries = data.get("checks")
        if not isinstance(entries, list) or not entries:
            raise err("checks", "must be a non-empty list of {check: NAME, on: [...], action: ...}")
        safe = data.get("safe_reply") or {}
        if not isinstance(safe, dict) or any(not isinstance(v, str) or not v.strip() for v in safe.values()):
            raise err("safe_reply", "must map a language to a non-empty reply",
                      "e.g. safe_reply: {en: ..., ja: ...}; quote replies like 'no' (YAML reads yes/no as booleans)")
        checks = [_load_entry(i, e, err) for i, e in enumerate(entries)]
        if any(c.action == "block" for c in checks):
            for lang in ("en", "ja"):
                if lang not in safe:
                    raise err(f"safe_reply.{lang}", "missing: a check has action 'block', which answers with the safe reply",
                              "add safe_reply: {en: ..., ja: ...}")
        return cls(checks, {str(k): v for k, v in safe.items()}, source, _load_review(data.get("review"), err))

    @property
    def needs_logprobs(self) -> bool:
        """Whether a check reads the answer's token log-probabilities (the engine must compute them)."""
        return any(c.name == "confidence" for c in self.checks_on("output")) or self.review.get("low_confidence") is not None

    # ---- checking ----------------------------------------------------------------------------------------------
    def check_input(self, text: str, ctx: GuardContext | None = None) -> Verdict:
        ctx = ctx or GuardContext()
        return self.decide("input", text, self.run("input", text, ctx), ctx)

    def check_output(self, text: str, ctx: GuardContext | None = None) -> Verdict:
        ctx = ctx or GuardContext()
        return self.decide("output", text, self.run("output", text, ctx), ctx)

    def checks_on(self, where: str) -> list[PolicyCheck]:
        return [c for c in self.checks if where in c.on]

    def run(self, where: str, text: str, ctx: GuardContext, only=None) -> list[CheckResult]:
        return [c.check.evaluate(text, ctx, c.action) for c in self.checks_on(where) if only is None or c in only]

    def decide(self, where: str, text: str, results: list[CheckResult], ctx: GuardContext) -> Verdict:
        action = most_severe(r.action for r in results if r.fired)
        lang = self.reply_lang(text, ctx)
        if action == "block":
            out = self.safe_reply.get(lang) or next(iter(self.safe_reply.values()), "")
        else:
            out = redact(text, results, self._placeholders())
        return Verdict(where, action, out, results, lang)

    def reply_lang(self, text: str, ctx: GuardContext) -> str:
        if ctx.lang:
            return ctx.lang
        return "ja" if detect_language(ctx.question or text) == "ja" else "en"

    def _placeholders(self) -> dict[str, str]:
        return {c.name: getattr(c.check.options, "placeholder", "[{type}]") for c in self.checks}

    def stream(self, ctx: GuardContext | None = None):
        """A :class:`~kogata.guard.stream.StreamGuard` running this policy's output checks on a token stream."""
        from kogata.guard.stream import StreamGuard

        return StreamGuard(self, ctx or GuardContext())


def _load_review(raw: Any, err) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise err("review", "must be a mapping", "e.g. review: {sample_rate: 0.01, low_confidence: -2.0}")
    for key in raw:
        if key not in _REVIEW_KEYS:
            raise err(f"review.{key}", "unknown key", f"known keys: {', '.join(_REVIEW_KEYS)}")
    out: dict[str, Any] = {}
    rate = raw.get("sample_rate", 0.0)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise err("review.sample_rate", f"{rate!r} is not a number in [0, 1]", "e.g. sample_rate: 0.01 reviews 1% of answers")
    out["sample_rate"] = float(rate)
    low = raw.get("low_confidence")
    if low is not None and (isinstance(low, bool) or not isinstance(low, (int, float)) or low > 0):
        raise err("review.low_confidence", f"{low!r} is not a mean log-probability (a number ≤ 0)",
                  "e.g. low_confidence: -2.0; leave it out to queue no low-confidence answers")
    out["low_confidence"] = None if low is None else float(low)
    return out


def redact(text: str, results: list[CheckResult], placeholders: dict[str, str]) -> str:
    """``text`` with the hits of every fired ``redact`` check replaced by their placeholder (``[EMAIL]``)."""
    spans = sorted(
        (h.start, h.end, placeholders.get(r.check, "[{type}]").format(type=h.type))
        for r in results if r.fired and r.action == "redact" for h in r.hits
    )
    out, pos = [], 0
    for start, end, ph in spans:
        if start < pos:  # overlaps the previous span: extend it
            if end > pos:
                pos = end
            continue
        out.append(text[pos:start])
        out.append(ph)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _did_you_mean(word: str, options) -> str | None:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


def _load_entry(i: int, entry: Any, err) -> PolicyCheck:
    key = f"checks[{i}]"
    if not isinstance(entry, dict) or "check" not in entry:
        raise err(key, "each entry needs 'check: NAME'", f"known checks: {', '.join(sorted(CHECKS))}")
    entry = {("on" if k is True else str(k)): v for k, v in entry.items()}  # YAML 1.1 reads a bare `on:` as True
    name = str(entry["check"])
    if name not in CHECKS:
        raise err(f"{key}.check", f"unknown check {name!r}", _did_you_mean(name, CHECKS) or f"known checks: {', '.join(sorted(CHECKS))}")
    cls = CHECKS[name]
    action = entry.get("action", "flag")
    if action not in ACTIONS:
        raise err(f"{key}.action", f"{action!r} is not an action", _did_you_mean(str(action), ACTIONS) or f"use one of {', '.join(ACTIONS)}")
    if action == "redact" and not cls.redactable:
        raise err(f"{key}.action", f"check {name!r} has no spans to redact", "use flag, hold or block")
    on = entry.get("on", list(WHERE))
    on = [on] if isinstance(on, str) else on
    if not isinstance(on, list) or not on or any(w not in WHERE for w in on):
        raise err(f"{key}.on", f"must be a list of input/output, got {on!r}", "e.g. on: [input, output]")
    options = {k: v for k, v in entry.items() if k not in _ENTRY_KEYS}
    try:
        opts = cls.Options(**options)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        if first["type"] == "extra_forbidden":
            known = [f for f in cls.Options.model_fields]
            raise err(f"{key}.{loc}", f"unknown option for check {name!r}",
                      _did_you_mean(loc.split(".")[0], known) or f"options: {', '.join(known) or 'none'}") from None
        msg = first["msg"].removeprefix("Value error, ")
        raise err(f"{key}.{loc}", msg) from None
    return PolicyCheck(cls(opts), frozenset(on), action)
