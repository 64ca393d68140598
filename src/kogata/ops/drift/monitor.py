"""Run every drift signal on a window of served traffic and say what it means in plain words.

``check(current, reference)`` → :class:`DriftReport` (the signals, the alerts, the new terms driving a shift,
examples of drifted questions, a verdict in en/ja). ``rolling(exchanges, window)`` checks consecutive windows of
``window`` requests against a fixed reference — what a dashboard plots and what ``benchmarks/drift_loop.py``
measures detection delay with.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kogata.core.errors import KogataError
from kogata.ops.drift import signals as sig
from kogata.ops.drift.window import Exchange, from_texts

REPORT_VERSION = 1
_QUESTION_KEYS = ("question", "query", "prompt", "instruction", "input")  # what a user would have asked


@dataclass
class DriftReport:
    signals: list[sig.Signal]
    n: int
    n_reference: int
    window: dict[str, Any] = field(default_factory=dict)  # since/until (µs) or request positions
    new_terms: list[dict[str, Any]] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.time)

    @property
    def alerts(self) -> list[sig.Signal]:
        return [s for s in self.signals if s.alert]

    def verdict(self, lang: str = "en") -> str:
        if not self.alerts:
            if self.n and all(s.status == "insufficient" for s in self.signals):
                return self.signals[0].message[lang]
            return "No drift: traffic looks like the reference." if lang == "en" else "ドリフトなし：通信は基準と同じ傾向です。"
        parts = [s.message[lang] for s in self.alerts]
        advice = _advice(self.alerts, lang)
        sep = "; " if lang == "en" else "。"
        return sep.join(parts) + (sep if lang == "ja" else ". ") + advice

    def to_dict(self) -> dict[str, Any]:
        return {"version": REPORT_VERSION, "created": self.created, "n": self.n, "n_reference": self.n_reference,
                "window": self.window, "alerts": [s.name for s in self.alerts],
                "verdict": {"en": self.verdict("en"), "ja": self.verdict("ja")},
                "signals": [s.to_dict() for s in self.signals], "new_terms": self.new_terms, "examples": self.examples}


def _advice(alerts: list[sig.Signal], lang: str) -> str:
    names = {s.name for s in alerts}
    if "tokenizer_fit" in names or "language_mix" in names:
        return ("Retrain or re-trim: the model now sees text it was not trimmed or tuned for "
                "(review the flagged answers, then `kogata improve`)." if lang == "en" else
                "再学習または語彙の再トリムを検討してください：モデルが想定外の文章を受けています（フラグ付き回答をレビューし、"
                "`kogata improve` を実行）。")
    if "confidence" in names or any(n.startswith("guard:") for n in names) or "answer_refused" in names:
        return ("Review the flagged answers: corrections become training data for `kogata improve`."
                if lang == "en" else "フラグ付きの回答をレビューしてください。修正は `kogata improve` の学習データになります。")
    if "latency" in names:
        return ("Check the server load (threads, --parallel) before the model." if lang == "en"
                else "モデルより先にサーバーの負荷（スレッド数、--parallel）を確認してください。")
    return ("Look at the new questions below; add them to the suite if they are here to stay." if lang == "en"
            else "下の新しい質問を確認し、今後も続くなら評価スイートに追加してください。")


def check(current: list[Exchange], reference: list[Exchange], *, thresholds: sig.Thresholds | None = None,
          count_tokens: Callable[[str], int] | None = None, embed: Callable[[list[str]], np.ndarray] | None = None,
          window: dict[str, Any] | None = None) -> DriftReport:
    th = thresholds or sig.Thresholds()
    found = [
        sig.input_length(reference, current, th),
        sig.language_mix(reference, current, th),
        sig.tokenizer_fit(reference, current, th, count_tokens),
        sig.confidence(reference, current, th),
        *sig.guard_rates(reference, current, th),
        sig.answer_refused(reference, current, th),
        sig.latency(reference, current, th),
        sig.embedding(reference, current, th, embed),
    ]
    # a signal the reference cannot speak to (texts have no latency, no confidence) is left out, not shown as a gap
    found = [s for s in found if not (s.status == "unavailable" and s.n_reference == 0)]
    terms = sig.new_terms(reference, current)
    examples = _examples(current, terms, found)
    return DriftReport(found, len(current), len(reference), window or {}, terms, examples)


def _examples(current: list[Exchange], terms: list[dict[str, Any]], found: list[sig.Signal], k: int = 5) -> list[str]:
    wanted = [t["term"] for t in terms[:3]]
    picked = [x.question for x in current if any(w in x.question.lower() for w in wanted)][:k]
    if len(picked) < k and any(s.name == "language_mix" and s.alert for s in found):
        lang_sig = next(s for s in found if s.name == "language_mix")
        grown = max(("ja", "en", "other"), key=lambda g: lang_sig.detail["current"][g] - lang_sig.detail["reference"][g])
        picked += [x.question for x in current if x.lang == grown and x.question not in picked][: k - len(picked)]
    return [q[:300] for q in picked]


def rolling(exchanges: list[Exchange], reference: list[Exchange], window: int, **kw: Any) -> list[DriftReport]:
    """``check`` on consecutive, non-overlapping windows of ``window`` requests (a trailing partial window is dropped)."""
    if window < 1:
        raise KogataError(f"window {window} must be at least 1 request", "use e.g. --window 100")
    out = []
    for start in range(0, len(exchanges) - window + 1, window):
        out.append(check(exchanges[start:start + window], reference, window={"first": start, "last": start + window - 1}, **kw))
    return out


def reference_from_files(paths: list[Path]) -> list[Exchange]:
    """Reference questions from a suite's data or a training corpus (any format ``kogata data`` reads): the
    question of question/answer records, the text of text records."""
    from kogata.data.readers import read_inputs

    result = read_inputs([Path(p) for p in paths])
    texts = []
    for r in result.records:
        key = next((k for k in _QUESTION_KEYS if isinstance(r.fields.get(k), str)), None)
        texts.append(r.fields[key] if key else r.text)
    ex = from_texts(texts)
    if not ex:
        raise KogataError(f"no reference texts in {', '.join(map(str, paths))}", "give the suite's data or a corpus of questions")
    return ex
