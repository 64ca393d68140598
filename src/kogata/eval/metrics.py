"""Quality metrics for English and Japanese text, with confidence intervals.

Every metric the tasks report is a dict ``{"value", "stderr", "ci_low", "ci_high", "n"}``:

* per-item scores (exact match, F1, ROUGE-L, accuracy, acc/acc_norm) are averaged; ``stderr`` is the
  normal-approximation standard error of the mean and the interval is a percentile bootstrap
  (1000 resamples, fixed seed, 95%);
* corpus perplexities are ratios over documents, so both ``stderr`` and the interval come from a bootstrap
  over documents, computed in log space (no overflow however large the perplexity); a metric a task cannot
  report for its data (word perplexity of Japanese text) is ``{"value": None, ..., "reason": ...}``.

The registry at the bottom (:class:`MetricSpec`, :data:`METRICS`) gives every metric's direction, unit,
display format and group (quality / efficiency / cost); everything that compares or prints metrics reads it.

Text normalisation (:func:`normalize_answer`): Unicode NFKC (full-width digits/letters become ASCII,
half-width kana become full-width), lowercase, every Unicode punctuation and symbol character removed
(ASCII ``.,!?`` as well as Japanese ``、。「」！？・…``), the English articles *a/an/the* dropped, whitespace
collapsed. Tokens (:func:`tokenize`) are ASCII/Latin words plus one token per CJK ideograph, kana or hangul
character, so mixed text such as ``"SIMカードを交換"`` gives ``["sim", "カ", "ー", "ド", "を", "交", "換"]``:
F1 and ROUGE-L are then character-level for Japanese and word-level for English.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 1234
CI_LEVEL = 0.95

_ARTICLES = re.compile(r"\b(a|an|the)\b")
# One token per ideograph / kana / hangul character; everything else groups into words.
_CJK = (
    "\u3040-\u30ff"  # hiragana, katakana (incl. ー)
    "\u31f0-\u31ff"  # katakana phonetic extensions
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs
    "\uac00-\ud7af"  # hangul syllables
    "\U00020000-\U0002fa1f"  # CJK extension B+ and compatibility supplement
)
_TOKEN = re.compile(f"[{_CJK}]|[^\\s{_CJK}]+")


# --------------------------------------------------------------------------- normalisation


def _strip_punctuation(text: str) -> str:
    return "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in text)


def normalize_text(text: str) -> str:
    """NFKC, lowercase, punctuation/symbols removed, whitespace collapsed (articles kept)."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(_strip_punctuation(text).split())


def normalize_answer(text: str) -> str:
    """:func:`normalize_text` and, in addition, the English articles a/an/the removed (SQuAD style)."""
    return " ".join(_ARTICLES.sub(" ", normalize_text(text)).split())


def tokenize(text: str) -> list[str]:
    """Tokens of already-normalised text: words for Latin script, single characters for CJK/kana."""
    return _TOKEN.findall(text)


# --------------------------------------------------------------------------- per-item scores


def exact_match(prediction: str, target: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(target))


def f1(prediction: str, target: str) -> float:
    """SQuAD token F1 over :func:`tokenize` tokens of the normalised strings."""
    pred, gold = tokenize(normalize_answer(prediction)), tokenize(normalize_answer(target))
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, target: str) -> float:
    """ROUGE-L F-measure (LCS-based, beta = 1): words for English, characters for Japanese.

    Normalised with :func:`normalize_text` (articles kept, as in ``rouge-score``; no stemming).
    """
    pred, gold = tokenize(normalize_text(prediction)), tokenize(normalize_text(target))
    if not pred or not gold:
        return float(pred == gold)
    lcs = _lcs_length(pred, gold)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(gold)
    return 2 * precision * recall / (precision + recall)


def accuracy(prediction: str, target: str) -> float:
    """Label accuracy: the normalised prediction equals the normalised label.

    Only the first line of the prediction is compared, so ``"billing\\nThanks"`` still counts as ``billing``.
    """
    first = prediction.strip().split("\n", 1)[0] if prediction.strip() else ""
    return float(normalize_text(first) == normalize_text(target))


GENERATE_METRICS: dict[str, Callable[[str, str], float]] = {
    "exact_match": exact_match,
    "f1": f1,
    "rouge_l": rouge_l,
    "accuracy": accuracy,
}


def multiple_choice_scores(logprobs: Sequence[float], choices: Sequence[str], gold: int) -> dict[str, float]:
    """lm-eval's ``acc`` and ``acc_norm``: argmax of the log-likelihoods, raw and divided by the choice's
    length in characters (``len(choice)``, exactly as lm-evaluation-harness computes it)."""
    lls = np.asarray(logprobs, dtype=np.float64)
    lengths = np.asarray([float(len(c)) for c in choices])
    return {
        "acc": float(int(np.argmax(lls)) == gold),
        "acc_norm": float(int(np.argmax(lls / lengths)) == gold),
    }


# --------------------------------------------------------------------------- perplexity
# Corpus statistics over documents, computed in log space: the loss is nats per unit (token, word, byte),
# ``-Σ logprob / Σ units``; perplexity is exp(loss), bits per byte loss / ln 2. Bootstrap replicates and their
# percentile interval are taken on the loss and then transformed (both transforms are increasing), so a huge
# perplexity never overflows an intermediate square or sum.

_MAX_EXP = math.log(np.finfo(np.float64).max)  # ~709.78: exp above this is +inf
CJK_SHARE_THRESHOLD = 0.3  # above this share of CJK/kana characters, whitespace does not delimit words
_CJK_CHAR = re.compile(f"[{_CJK}]")


def count_words(text: str) -> int:
    """lm-eval's word count: ``len(re.split(r"\\s+", text))`` (Japanese without spaces counts as few words)."""
    return len(re.split(r"\s+", text))


def count_bytes(text: str) -> int:
    return len(text.encode("utf-8"))


def cjk_share(texts: Sequence[str]) -> float:
    """Share of the non-whitespace characters that are CJK ideographs, kana or hangul (0 for no text)."""
    chars = sum(len(t) - sum(ch.isspace() for ch in t) for t in texts)
    if chars == 0:
        return 0.0
    return sum(len(_CJK_CHAR.findall(t)) for t in texts) / chars


def words_countable(texts: Sequence[str], language: str | None = None) -> tuple[bool, str | None]:
    """Whether whitespace counts the words of ``texts``; if not, the reason (for the results record).

    An explicit ``language`` decides (``ja``: no; anything else: yes); without one, text whose CJK share is
    above :data:`CJK_SHARE_THRESHOLD` is not word-countable.
    """
    if language == "ja":
        return False, "language is ja: Japanese text has almost no spaces, so whitespace words are not words"
    if language is not None:
        return True, None
    share = cjk_share(texts)
    if share > CJK_SHARE_THRESHOLD:
        return False, (f"{share:.0%} of the characters are CJK/kana (above {CJK_SHARE_THRESHOLD:.0%}): "
                       "whitespace does not delimit words in this text")
    return True, None


def _exp(x: float) -> float:
    return math.exp(x) if x <= _MAX_EXP else float("inf")


def _bits(x: float) -> float:
    return x / math.log(2)


@dataclass(frozen=True)
class CorpusRatio:
    """A corpus statistic ``transform(-Σ logprob / Σ denominator)``; ``transform`` is increasing."""

    denominator: str  # the per-document count it divides by: n_tokens, n_words or n_bytes
    transform: Callable[[float], float]


PERPLEXITY_METRICS: dict[str, CorpusRatio] = {
    "token_perplexity": CorpusRatio("n_tokens", _exp),
    "word_perplexity": CorpusRatio("n_words", _exp),
    "bits_per_byte": CorpusRatio("n_bytes", _bits),
}


def _loss(logprobs: Sequence[float], units: Sequence[float]) -> float:
    return -float(np.sum(logprobs)) / float(np.sum(units))


def token_perplexity(logprobs: Sequence[float], n_tokens: Sequence[int]) -> float:
    return _exp(_loss(logprobs, n_tokens))


def word_perplexity(logprobs: Sequence[float], n_words: Sequence[int]) -> float:
    return _exp(_loss(logprobs, n_words))


def bits_per_byte(logprobs: Sequence[float], n_bytes: Sequence[int]) -> float:
    return _bits(_loss(logprobs, n_bytes))


# --------------------------------------------------------------------------- aggregation with intervals


def _percentile_ci(replicates: np.ndarray) -> tuple[float, float]:
    alpha = (1 - CI_LEVEL) / 2
    return float(np.quantile(replicates, alpha)), float(np.quantile(replicates, 1 - alpha))


def _resample_indices(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))


def _empty(n: int = 0) -> dict[str, Any]:
    return {"value": float("nan"), "stderr": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": n}


def mean_with_ci(scores: Sequence[float], seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """Mean of per-item scores; normal-approximation stderr; percentile-bootstrap 95% interval."""
    x = np.asarray(scores, dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return _empty()
    value = float(x.mean())
    stderr = float(x.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    low, high = _percentile_ci(x[_resample_indices(n, seed)].mean(axis=1)) if n > 1 else (value, value)
    return {"value": value, "stderr": stderr, "ci_low": low, "ci_high": high, "n": n}


def _transformed_std(losses: np.ndarray, transform: Callable[[float], float]) -> float:
    """Standard deviation of ``transform(losses)`` without overflow (exp: factor out the largest loss)."""
    if transform is _exp:
        top = float(losses.max())
        if top > _MAX_EXP:
            return float("inf")
        return math.exp(top) * float(np.exp(losses - top).std(ddof=1))
    return float(np.asarray([transform(v) for v in losses]).std(ddof=1))


def corpus_metric_with_ci(name: str, logprobs: Sequence[float], denominators: Sequence[float],
                          seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """One of :data:`PERPLEXITY_METRICS` over documents; stderr and interval by bootstrap over documents."""
    ratio = PERPLEXITY_METRICS[name]
    num = -np.asarray(logprobs, dtype=np.float64)
    den = np.asarray(denominators, dtype=np.float64)
    n = int(num.size)
    if n == 0:
        return _empty()
    value = ratio.transform(float(num.sum() / den.sum()))
    if n == 1:
        return {"value": value, "stderr": 0.0, "ci_low": value, "ci_high": value, "n": 1}
    idx = _resample_indices(n, seed)
    losses = num[idx].sum(axis=1) / den[idx].sum(axis=1)
    low, high = _percentile_ci(losses)
    return {"value": value, "stderr": _transformed_std(losses, ratio.transform),
            "ci_low": ratio.transform(low), "ci_high": ratio.transform(high), "n": n}


def not_reported(reason: str, n: int) -> dict[str, Any]:
    """The record of a metric a task does not report for its data (``value`` null, and why)."""
    return {"value": None, "stderr": None, "ci_low": None, "ci_high": None, "n": n, "reason": reason}


def ratio_metric_with_ci(
    statistic: Callable[[np.ndarray, np.ndarray], float] | Callable[..., float],
    numerators: Sequence[float],
    denominators: Sequence[float],
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """Any corpus statistic over documents; stderr and interval by bootstrap over documents.

    For the perplexity family use :func:`corpus_metric_with_ci`, which works in log space.
    """
    num = np.asarray(numerators, dtype=np.float64)
    den = np.asarray(denominators, dtype=np.float64)
    n = int(num.size)
    if n == 0:
        return _empty()
    value = float(statistic(num, den))
    if n == 1:
        return {"value": value, "stderr": 0.0, "ci_low": value, "ci_high": value, "n": 1}
    idx = _resample_indices(n, seed)
    reps = np.array([statistic(num[i], den[i]) for i in idx])
    low, high = _percentile_ci(reps)
    return {"value": value, "stderr": float(reps.std(ddof=1)), "ci_low": low, "ci_high": high, "n": n}


# --------------------------------------------------------------------------- the metric registry
# One row per metric kogata reports: its direction, unit, display format and group. KPI validation, the
# optimize decision and every report read this table (``lower_is_better`` below); task types name the
# quality metrics they produce from it. Adding a metric is one ``register_metric`` line.


@dataclass(frozen=True)
class MetricSpec:
    name: str
    higher_is_better: bool = True
    unit: str = ""  # "" (a fraction 0..1), "bits/byte", "perplexity", "ms", "tok/s", "MiB", "currency", …
    fmt: str = "{:.3f}"  # how reports print a value
    summary: str = ""
    group: str = "quality"  # quality (per task: <task>.<metric>), efficiency or cost (bare names)
    per_item: bool = False  # quality: the mean of one score per item (paired differences per item are possible)

    @property
    def direction(self) -> str:
        return "higher" if self.higher_is_better else "lower"

    def format(self, value: Any) -> str:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "–"
        return self.fmt.format(value)


METRICS: dict[str, MetricSpec] = {}


def register_metric(spec: MetricSpec) -> MetricSpec:
    if spec.group not in ("quality", "efficiency", "cost"):
        raise ValueError(f"metric {spec.name}: group must be quality, efficiency or cost, not {spec.group!r}")
    METRICS[spec.name] = spec
    return spec


for _spec in (
    MetricSpec("exact_match", per_item=True, summary="normalised answer equals the gold answer"),
    MetricSpec("f1", per_item=True, summary="token F1 (characters for Japanese, words for English)"),
    MetricSpec("rouge_l", per_item=True, summary="ROUGE-L F-measure on the same tokens"),
    MetricSpec("accuracy", per_item=True, summary="the first line of the answer equals the gold label"),
    MetricSpec("acc", per_item=True, summary="multiple choice: highest log-likelihood is the gold choice"),
    MetricSpec("acc_norm", per_item=True, summary="multiple choice, log-likelihood per character"),
    MetricSpec("bits_per_byte", higher_is_better=False, unit="bits/byte", fmt="{:.4f}", summary="corpus bits per UTF-8 byte"),
    MetricSpec("token_perplexity", higher_is_better=False, unit="perplexity", fmt="{:.3f}", summary="perplexity per model token"),
    MetricSpec("word_perplexity", higher_is_better=False, unit="perplexity", fmt="{:.3f}",
               summary="perplexity per whitespace word (not reported for Japanese/CJK text)"),
    MetricSpec("load_s", higher_is_better=False, unit="s", fmt="{:.2f}", group="efficiency", summary="cold load time, own process"),
    MetricSpec("prefill_tok_s", unit="tok/s", fmt="{:.1f}", group="efficiency", summary="prompt tokens per second (median)"),
    MetricSpec("decode_tok_s", unit="tok/s", fmt="{:.1f}", group="efficiency", summary="generated tokens per second (median)"),
    MetricSpec("ttft_p50_ms", higher_is_better=False, unit="ms", fmt="{:.0f}", group="efficiency", summary="time to first token, median"),
    MetricSpec("ttft_p95_ms", higher_is_better=False, unit="ms", fmt="{:.0f}", group="efficiency", summary="time to first token, 95th percentile"),
    MetricSpec("latency_p50_ms", higher_is_better=False, unit="ms", fmt="{:.0f}", group="efficiency", summary="end-to-end latency, median"),
    MetricSpec("latency_p95_ms", higher_is_better=False, unit="ms", fmt="{:.0f}", group="efficiency", summary="end-to-end latency, 95th percentile"),
    MetricSpec("peak_rss_mb", higher_is_better=False, unit="MiB", fmt="{:.0f}", group="efficiency", summary="peak resident memory of the probe process"),
    MetricSpec("disk_mb", higher_is_better=False, unit="MiB", fmt="{:.1f}", group="efficiency", summary="artifact size on disk"),
    MetricSpec("params_m", higher_is_better=False, unit="M params", fmt="{:.1f}", group="efficiency", summary="parameters, millions"),
    MetricSpec("cost_per_1m_tokens", higher_is_better=False, unit="currency", fmt="{:.3g}", group="cost", summary="serving cost per 1M tokens"),
    MetricSpec("cost_per_1k_requests", higher_is_better=False, unit="currency", fmt="{:.3g}", group="cost", summary="serving cost per 1,000 requests"),
    MetricSpec("cost_per_month", higher_is_better=False, unit="currency", fmt="{:,.0f}", group="cost", summary="machines paid for the month"),
):
    register_metric(_spec)


def metric_names(group: str) -> tuple[str, ...]:
    """Registered metric names of one group, in registration order."""
    return tuple(name for name, spec in METRICS.items() if spec.group == group)


def metric_spec(name: str) -> MetricSpec | None:
    """The spec of ``name`` (also accepts ``task.metric`` and ``metric_ci_low``-style suffixed names)."""
    base = name.split(".")[-1]
    if base in METRICS:
        return METRICS[base]
    for suffix in ("_ci_low", "_ci_high", "_stderr"):
        if base.endswith(suffix) and base[: -len(suffix)] in METRICS:
            return METRICS[base[: -len(suffix)]]
    return None


def lower_is_better(name: str) -> bool:
    spec = metric_spec(name)
    return spec is not None and not spec.higher_is_better
