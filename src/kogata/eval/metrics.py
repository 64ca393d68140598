"""Quality metrics for English and Japanese text, with confidence intervals.

Every metric the tasks report is a dict ``{"value", "stderr", "ci_low", "ci_high", "n"}``:

* per-item scores (exact match, F1, ROUGE-L, accuracy, acc/acc_norm) are averaged; ``stderr`` is the
  normal-approximation standard error of the mean and the interval is a percentile bootstrap
  (1000 resamples, fixed seed, 95%);
* corpus perplexities are ratios over documents, so both ``stderr`` and the interval come from a bootstrap
  over documents.

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


def count_words(text: str) -> int:
    """lm-eval's word count: ``len(re.split(r"\\s+", text))`` (Japanese without spaces counts as few words)."""
    return len(re.split(r"\s+", text))


def count_bytes(text: str) -> int:
    return len(text.encode("utf-8"))


def token_perplexity(logprobs: Sequence[float], n_tokens: Sequence[int]) -> float:
    return math.exp(-float(np.sum(logprobs)) / float(np.sum(n_tokens)))


def word_perplexity(logprobs: Sequence[float], n_words: Sequence[int]) -> float:
    return math.exp(-float(np.sum(logprobs)) / float(np.sum(n_words)))


def bits_per_byte(logprobs: Sequence[float], n_bytes: Sequence[int]) -> float:
    return -float(np.sum(logprobs)) / (float(np.sum(n_bytes)) * math.log(2))


# --------------------------------------------------------------------------- aggregation with intervals


def _percentile_ci(replicates: np.ndarray) -> tuple[float, float]:
    alpha = (1 - CI_LEVEL) / 2
    return float(np.quantile(replicates, alpha)), float(np.quantile(replicates, 1 - alpha))


def _resample_indices(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))


def mean_with_ci(scores: Sequence[float], seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """Mean of per-item scores; normal-approximation stderr; percentile-bootstrap 95% interval."""
    x = np.asarray(scores, dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return {"value": float("nan"), "stderr": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0}
    value = float(x.mean())
    stderr = float(x.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    low, high = _percentile_ci(x[_resample_indices(n, seed)].mean(axis=1)) if n > 1 else (value, value)
    return {"value": value, "stderr": stderr, "ci_low": low, "ci_high": high, "n": n}


def ratio_metric_with_ci(
    statistic: Callable[[np.ndarray, np.ndarray], float] | Callable[..., float],
    numerators: Sequence[float],
    denominators: Sequence[float],
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """A corpus statistic over documents (e.g. perplexity); stderr and interval by bootstrap over documents."""
    num = np.asarray(numerators, dtype=np.float64)
    den = np.asarray(denominators, dtype=np.float64)
    n = int(num.size)
    if n == 0:
        return {"value": float("nan"), "stderr": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0}
    value = float(statistic(num, den))
    if n == 1:
        return {"value": value, "stderr": 0.0, "ci_low": value, "ci_high": value, "n": 1}
    idx = _resample_indices(n, seed)
    reps = np.array([statistic(num[i], den[i]) for i in idx])
    low, high = _percentile_ci(reps)
    return {"value": value, "stderr": float(reps.std(ddof=1)), "ci_low": low, "ci_high": high, "n": n}


PERPLEXITY_METRICS: dict[str, Callable[[Sequence[float], Sequence[int]], float]] = {
    "token_perplexity": token_perplexity,
    "word_perplexity": word_perplexity,
    "bits_per_byte": bits_per_byte,
}


# --------------------------------------------------------------------------- the metric registry
# One row per metric a task can report: its direction, unit and display format. KPI validation, the
# optimize decision and every report read this table (``lower_is_better`` below); adding a metric is one
# ``register_metric`` line.


@dataclass(frozen=True)
class MetricSpec:
    name: str
    higher_is_better: bool = True
    unit: str = ""  # "" (a fraction 0..1), "bits/byte", "perplexity", "ms", …
    fmt: str = "{:.3f}"  # how reports print a value
    summary: str = ""


METRICS: dict[str, MetricSpec] = {}


def register_metric(spec: MetricSpec) -> MetricSpec:
    METRICS[spec.name] = spec
    return spec


for _spec in (
    MetricSpec("exact_match", summary="normalised answer equals the gold answer"),
    MetricSpec("f1", summary="token F1 (characters for Japanese, words for English)"),
    MetricSpec("rouge_l", summary="ROUGE-L F-measure on the same tokens"),
    MetricSpec("accuracy", summary="answer contains / equals the gold label"),
    MetricSpec("acc", summary="multiple choice: highest log-likelihood is the gold choice"),
    MetricSpec("acc_norm", summary="multiple choice, length-normalised log-likelihood"),
    MetricSpec("bits_per_byte", higher_is_better=False, unit="bits/byte", fmt="{:.4f}", summary="corpus bits per UTF-8 byte"),
    MetricSpec("token_perplexity", higher_is_better=False, unit="perplexity", fmt="{:.3f}", summary="perplexity per model token"),
    MetricSpec("word_perplexity", higher_is_better=False, unit="perplexity", fmt="{:.3f}", summary="perplexity per whitespace word (not for Japanese)"),
):
    register_metric(_spec)


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
