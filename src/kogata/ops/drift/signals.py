"""Drift signals: one window of served traffic against a reference, each with a test, an effect size and a threshold.

Every signal alerts only when **both** its test rejects "no change" at ``alpha`` (default 0.001: many signals are
checked on many windows, so a loose level would alarm on quiet days) **and** its effect is large enough to matter
to the business (a PSI of 0.25, a 15-point change in the language mix, 30% more tokens per character …). A window
with fewer than ``min_window`` requests says "not enough traffic" and never alerts.

| signal | compares | test | effect (alerts at) |
|---|---|---|---|
| ``input_length`` | question length in characters | Kolmogorov–Smirnov | PSI over the reference's deciles ≥ 0.25 |
| ``language_mix`` | share of ja / en / other questions | χ² on the counts | total-variation distance ≥ 0.15 |
| ``tokenizer_fit`` | tokens per character of the served artifact's tokenizer | Mann–Whitney U | ratio of means ≥ 1.3 |
| ``confidence`` | mean token log-probability of answers | Mann–Whitney U (one-sided: lower) | median drop ≥ 0.3 nats |
| ``guard:<check>`` | share of requests where the check fired | Fisher's exact | +10 points |
| ``answer_refused`` | share of empty or content-filtered answers | Fisher's exact | +10 points |
| ``latency`` | end-to-end latency | Mann–Whitney U (one-sided: higher) | p95 ratio ≥ 1.5 |
| ``embedding`` | question embeddings | MMD² (RBF kernel) permutation test | MMD² ≥ 0.02 |
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from kogata.ops.drift.window import Exchange


@dataclass(frozen=True)
class Thresholds:
    min_window: int = 50
    alpha: float = 0.001
    psi: float = 0.25
    language_tv: float = 0.15
    token_ratio: float = 1.3
    confidence_drop: float = 0.3
    rate_increase: float = 0.10
    latency_ratio: float = 1.5
    mmd: float = 0.02
    permutations: int = 200


@dataclass
class Signal:
    name: str
    status: str  # ok | alert | insufficient | unavailable
    value: float | None = None  # the window's statistic (share, ratio, PSI …)
    reference: float | None = None  # the same on the reference
    effect: float | None = None  # what is compared with the threshold
    threshold: float | None = None
    p_value: float | None = None
    n: int = 0
    n_reference: int = 0
    message: dict[str, str] = field(default_factory=dict)  # plain words, en and ja
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def alert(self) -> bool:
        return self.status == "alert"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("value", "reference", "effect", "p_value"):
            if isinstance(d[k], float):
                d[k] = round(d[k], 6)
        return d


def _gate(name: str, cur: Sequence, ref: Sequence, th: Thresholds) -> Signal | None:
    if len(cur) < th.min_window:
        return Signal(name, "insufficient", n=len(cur), n_reference=len(ref),
                      message={"en": f"not enough traffic to judge ({len(cur)} requests; needs {th.min_window})",
                               "ja": f"判断に必要な件数に達していません（{len(cur)} 件／必要 {th.min_window} 件）"})
    if len(ref) < th.min_window:
        return Signal(name, "unavailable", n=len(cur), n_reference=len(ref),
                      message={"en": f"the reference has too few items ({len(ref)})", "ja": f"基準データが少なすぎます（{len(ref)} 件）"})
    return None


def _status(p: float | None, effect: float | None, threshold: float, th: Thresholds) -> str:
    return "alert" if p is not None and effect is not None and p < th.alpha and effect >= threshold else "ok"


# ---- the signals ---------------------------------------------------------------------------------------------
def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``current`` over the deciles of ``reference``."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    r = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1) / len(reference)
    c = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1) / len(current)
    r, c = np.clip(r, 1e-4, None), np.clip(c, 1e-4, None)
    return float(np.sum((c - r) * np.log(c / r)))


def input_length(ref: list[Exchange], cur: list[Exchange], th: Thresholds) -> Signal:
    gate = _gate("input_length", cur, ref, th)
    if gate:
        return gate
    r = np.array([max(1, x.chars) for x in ref], dtype=float)
    c = np.array([max(1, x.chars) for x in cur], dtype=float)
    value = psi(np.log(r), np.log(c))
    p = float(stats.ks_2samp(r, c).pvalue)
    med_r, med_c = float(np.median(r)), float(np.median(c))
    s = Signal("input_length", _status(p, value, th.psi, th), med_c, med_r, value, th.psi, p, len(cur), len(ref))
    s.message = {"en": f"questions are now {med_c:.0f} characters long (median; was {med_r:.0f}); PSI {value:.2f}",
                 "ja": f"質問の長さ（中央値）が {med_r:.0f} 文字から {med_c:.0f} 文字になりました（PSI {value:.2f}）"}
    return s


def language_mix(ref: list[Exchange], cur: list[Exchange], th: Thresholds) -> Signal:
    gate = _gate("language_mix", cur, ref, th)
    if gate:
        return gate
    langs = ("ja", "en", "other")
    rc, cc = Counter(x.lang for x in ref), Counter(x.lang for x in cur)
    table = np.array([[rc[k] for k in langs], [cc[k] for k in langs]], dtype=float)
    table = table[:, table.sum(axis=0) > 0]
    p = float(stats.chi2_contingency(table).pvalue) if table.shape[1] > 1 else 1.0
    rs = {k: rc[k] / len(ref) for k in langs}
    cs = {k: cc[k] / len(cur) for k in langs}
    tv = 0.5 * sum(abs(cs[k] - rs[k]) for k in langs)
    s = Signal("language_mix", _status(p, tv, th.language_tv, th), cs["ja"], rs["ja"], tv, th.language_tv, p, len(cur), len(ref),
               detail={"current": cs, "reference": rs})
    s.message = {"en": f"Japanese questions: {rs['ja']:.0%} → {cs['ja']:.0%}, English: {rs['en']:.0%} → {cs['en']:.0%}",
                 "ja": f"日本語の質問 {rs['ja']:.0%} → {cs['ja']:.0%}、英語 {rs['en']:.0%} → {cs['en']:.0%}"}
    return s


def tokenizer_fit(ref: list[Exchange], cur: list[Exchange], th: Thresholds,
                  count_tokens: Callable[[str], int] | None) -> Signal:
    """Tokens per character with the served artifact's own tokenizer: a vocabulary-trimmed model seeing text it
    was not trimmed for splits it into many more pieces."""
    gate = _gate("tokenizer_fit", cur, ref, th)
    if gate:
        return gate
    if count_tokens is None:
        return Signal("tokenizer_fit", "unavailable", n=len(cur), n_reference=len(ref),
                      message={"en": "no tokenizer given (pass the served artifact)", "ja": "トークナイザーが指定されていません"})
    r = np.array([count_tokens(x.question) / max(1, x.chars) for x in ref])
    c = np.array([count_tokens(x.question) / max(1, x.chars) for x in cur])
    ratio = float(c.mean() / max(r.mean(), 1e-9))
    p = float(stats.mannwhitneyu(c, r, alternative="greater").pvalue)
    s = Signal("tokenizer_fit", _status(p, ratio, th.token_ratio, th), float(c.mean()), float(r.mean()), ratio,
               th.token_ratio, p, len(cur), len(ref))
    s.message = {"en": f"the model splits questions into {ratio:.1f}× as many tokens per character as on its reference "
                       f"({c.mean():.2f} vs {r.mean():.2f})",
                 "ja": f"質問 1 文字あたりのトークン数が基準の {ratio:.1f} 倍です（{c.mean():.2f} 対 {r.mean():.2f}）"}
    return s


def confidence(ref: list[Exchange], cur: list[Exchange], th: Thresholds) -> Signal:
    r = [x.mean_logprob for x in ref if x.mean_logprob is not None]
    c = [x.mean_logprob for x in cur if x.mean_logprob is not None]
    gate = _gate("confidence", c, r, th)
    if gate:
        return gate
    drop = float(np.median(r) - np.median(c))
    p = float(stats.mannwhitneyu(c, r, alternative="less").pvalue)
    s = Signal("confidence", _status(p, drop, th.confidence_drop, th), float(np.median(c)), float(np.median(r)), drop,
               th.confidence_drop, p, len(c), len(r))
    s.message = {"en": f"the model's confidence in its answers (median token log-probability): {np.median(r):.2f} → {np.median(c):.2f}",
                 "ja": f"回答の確信度（トークン対数確率の中央値）: {np.median(r):.2f} → {np.median(c):.2f}"}
    return s


def _rate_signal(name: str, hit_r: int, n_r: int, hit_c: int, n_c: int, th: Thresholds, what: dict[str, str]) -> Signal:
    pr, pc = hit_r / n_r, hit_c / n_c
    p = float(stats.fisher_exact([[hit_c, n_c - hit_c], [hit_r, n_r - hit_r]], alternative="greater").pvalue)
    s = Signal(name, _status(p, pc - pr, th.rate_increase, th), pc, pr, pc - pr, th.rate_increase, p, n_c, n_r)
    s.message = {"en": f"{what['en']}: {pr:.0%} → {pc:.0%} of requests", "ja": f"{what['ja']}: {pr:.0%} → {pc:.0%}"}
    return s


def guard_rates(ref: list[Exchange], cur: list[Exchange], th: Thresholds) -> list[Signal]:
    gate = _gate("guard", cur, ref, th)
    if gate:
        return [gate]
    checks = sorted(set().union(*(x.fired for x in ref), *(x.fired for x in cur)))
    return [_rate_signal(f"guard:{c}", sum(c in x.fired for x in ref), len(ref), sum(c in x.fired for x in cur), len(cur), th,
                         {"en": f"the {c} check fires", "ja": f"{c} チェックの検出率"}) for c in checks]


def _refused(x: Exchange) -> bool:
    return x.finish_reason == "content_filter" or x.action == "block" or (x.answer is not None and not x.answer.strip())


def answer_refused(ref: list[Exchange], cur: list[Exchange], th: Thresholds) -> Signal:
    r = [x for x in ref if x.answer is not None]
    gate = _gate("answer_refused", cur, r, th)
    if gate:
        return gate
    return _rate_signal("answer_refused", sum(map(_refused, r)), len(r), sum(map(_refused, cur)), len(cur), th,
                        {"en": "empty or refused answers", "ja": "空または拒否された回答の割合"})


def latency(ref: list[Exchange], cur: list[Exchange], th: Thresholds) -> Signal:
    r = [x.latency_ms for x in ref if x.latency_ms is not None]
    c = [x.latency_ms for x in cur if x.latency_ms is not None]
    gate = _gate("latency", c, r, th)
    if gate:
        return gate
    p95r, p95c = float(np.percentile(r, 95)), float(np.percentile(c, 95))
    ratio = p95c / max(p95r, 1e-9)
    p = float(stats.mannwhitneyu(c, r, alternative="greater").pvalue)
    s = Signal("latency", _status(p, ratio, th.latency_ratio, th), p95c, p95r, ratio, th.latency_ratio, p, len(c), len(r))
    s.message = {"en": f"answer time (p95): {p95r / 1000:.2f} s → {p95c / 1000:.2f} s",
                 "ja": f"応答時間（p95）: {p95r / 1000:.2f} 秒 → {p95c / 1000:.2f} 秒"}
    return s


def mmd2(x: np.ndarray, y: np.ndarray, gamma: float) -> float:
    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
        return np.exp(-gamma * np.clip(d, 0, None))

    return float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())


def embedding(ref: list[Exchange], cur: list[Exchange], th: Thresholds, embed: Callable[[list[str]], np.ndarray] | None,
              *, seed: int = 0, max_items: int = 200) -> Signal:
    """MMD² between question embeddings, with a permutation test (``th.permutations`` shuffles, bounded)."""
    gate = _gate("embedding", cur, ref, th)
    if gate:
        return gate
    if embed is None:
        return Signal("embedding", "unavailable", n=len(cur), n_reference=len(ref),
                      message={"en": "no embedder given", "ja": "埋め込みモデルが指定されていません"})
    rng = np.random.default_rng(seed)
    pick = lambda xs: [xs[i] for i in sorted(rng.choice(len(xs), min(len(xs), max_items), replace=False))]  # noqa: E731
    r, c = pick(ref), pick(cur)
    x = np.asarray(embed([e.question for e in r]), dtype=np.float64)
    y = np.asarray(embed([e.question for e in c]), dtype=np.float64)
    both = np.vstack([x, y])
    d = ((both[:, None, :] - both[None, :, :]) ** 2).sum(-1)
    gamma = 1.0 / max(float(np.median(d[d > 0])) if (d > 0).any() else 1.0, 1e-9)
    observed = mmd2(x, y, gamma)
    n = len(x)
    beats = sum(mmd2(both[idx[:n]], both[idx[n:]], gamma) >= observed
                for idx in (rng.permutation(len(both)) for _ in range(th.permutations)))
    p = (beats + 1) / (th.permutations + 1)
    alpha_floor = 1 / (th.permutations + 1)  # the smallest p a permutation test can give
    status = "alert" if p <= max(th.alpha, alpha_floor) and observed >= th.mmd else "ok"
    s = Signal("embedding", status, observed, 0.0, observed, th.mmd, p, len(c), len(r))
    s.message = {"en": f"what people ask about has changed (embedding MMD² {observed:.3f}, permutation p {p:.3f})",
                 "ja": f"質問の内容（話題）が変わっています（埋め込み MMD² {observed:.3f}、置換検定 p {p:.3f}）"}
    return s


# ---- what drives it ------------------------------------------------------------------------------------------
_TERM = re.compile(r"[A-Za-z][A-Za-z0-9\-]{2,}|[\u30a0-\u30ff]{3,}|[\u4e00-\u9fff]{2,}")
_NAME_LIKE = re.compile(r"[A-Z0-9\-]|[\u30a0-\u30ff]")


def new_terms(ref: list[Exchange], cur: list[Exchange], top: int = 10) -> list[dict[str, Any]]:
    """Words and katakana/kanji runs much more frequent in the window than in the reference (new product names…)."""
    rc = Counter(t.lower() for x in ref for t in set(_TERM.findall(x.question)))
    cc = Counter(t.lower() for x in cur for t in set(_TERM.findall(x.question)))
    named = {t.lower() for x in cur for t in _TERM.findall(x.question) if _NAME_LIKE.search(t)}
    nr, nc = max(1, len(ref)), max(1, len(cur))
    scored = []
    for term, k in cc.items():
        if k < 3:
            continue
        lift = (k / nc + 1e-3) / (rc[term] / nr + 1e-3)
        if lift >= 3:
            scored.append({"term": term, "share": round(k / nc, 4), "reference_share": round(rc[term] / nr, 4),
                           "lift": round(lift, 1), "name_like": term in named})
    # names first (capitals, digits, hyphens, katakana: new products and codes), then by share × log(lift)
    scored.sort(key=lambda d: (not d["name_like"], -d["share"] * math.log(d["lift"]), d["term"]))
    return scored[:top]
