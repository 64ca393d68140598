"""Metrics against hand-computed values (English and Japanese) and their confidence intervals."""

from __future__ import annotations

import math

import pytest

from kogata.eval import metrics as M


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The Answer!", "answer"),
        ("a cat, an owl and the dog.", "cat owl and dog"),
        ("１２３ＡＢＣ", "123abc"),  # NFKC: full-width digits/letters are ASCII
        ("「東京都」です。", "東京都 です"),
        ("はい！？、", "はい"),
        ("ｶﾀｶﾅ", "カタカナ"),  # half-width kana become full-width
        ("  many   spaces\n", "many spaces"),
    ],
)
def test_normalize_answer(text, expected):
    assert M.normalize_answer(text) == expected


def test_tokenize_mixed_text():
    assert M.tokenize(M.normalize_answer("SIMカードを交換、the Answer!")) == ["sim", "カ", "ー", "ド", "を", "交", "換", "answer"]


def test_exact_match():
    assert M.exact_match("The Eiffel Tower.", "eiffel tower") == 1.0
    assert M.exact_match("１２３", "123") == 1.0
    assert M.exact_match("東京。", "「東京」") == 1.0
    assert M.exact_match("東京都", "東京") == 0.0


def test_f1_japanese_characters():
    # pred 東/京/都, gold 東/京: P = 2/3, R = 1 -> F1 = 0.8
    assert M.f1("東京都", "東京") == pytest.approx(0.8)
    assert M.f1("大阪", "東京") == 0.0
    # 三日から五日 vs 三日: common 三, 日 (日 twice in pred, once in gold) -> 2 common; P = 2/6, R = 1 -> 0.5
    assert M.f1("三日から五日", "三日") == pytest.approx(0.5)


def test_f1_english_words():
    # pred: one year warranty ; gold: a one-year warranty -> "one year warranty" both -> 1.0
    assert M.f1("One-year warranty", "a one-year warranty") == pytest.approx(1.0)
    # pred: three to five days (4), gold: three business days (3): common three, days -> P 1/2, R 2/3 -> 4/7
    assert M.f1("three to five days", "three business days") == pytest.approx(4 / 7)
    assert M.f1("", "") == 1.0
    assert M.f1("", "x") == 0.0


def test_rouge_l():
    # English words: pred "the cat sat on the mat" (6), gold "the cat on mat" (4), LCS = 4 -> P 4/6, R 1 -> 0.8
    assert M.rouge_l("The cat sat on the mat.", "the cat on mat") == pytest.approx(0.8)
    # Japanese characters: pred アプリを再起動 (7), gold アプリの再起動 (7), LCS 6 -> 6/7
    assert M.rouge_l("アプリを再起動", "アプリの再起動") == pytest.approx(6 / 7)
    assert M.rouge_l("abc", "xyz") == 0.0


def test_rouge_l_matches_rouge_score_for_english():
    rouge_score = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_score.RougeScorer(["rougeL"])
    for pred, gold in [("the cat sat on the mat", "the cat on mat"), ("a b c d e", "e d c b a"), ("reset the router now", "please reset your router")]:
        assert M.rouge_l(pred, gold) == pytest.approx(scorer.score(gold, pred)["rougeL"].fmeasure)


def test_accuracy_labels():
    assert M.accuracy(" Billing\nthanks", "billing") == 1.0
    assert M.accuracy("返品。", "返品") == 1.0
    assert M.accuracy("shipping", "billing") == 0.0


def test_multiple_choice_acc_and_acc_norm():
    # raw argmax picks choice 0; per-character: -4/2 = -2 vs -6/12 = -0.5 -> choice 1
    s = M.multiple_choice_scores([-4.0, -6.0], ["ab", "abcdefghijkl"], gold=1)
    assert s == {"acc": 0.0, "acc_norm": 1.0}


def test_perplexity_definitions():
    lps, toks, words, nbytes = [-10.0, -20.0], [5, 10], [2, 4], [10, 20]
    assert M.token_perplexity(lps, toks) == pytest.approx(math.exp(2.0))
    assert M.word_perplexity(lps, words) == pytest.approx(math.exp(5.0))
    assert M.bits_per_byte(lps, nbytes) == pytest.approx(1.0 / math.log(2))
    assert M.count_words("two  words") == 2
    assert M.count_bytes("東京") == 6


def test_mean_with_ci_is_deterministic_and_brackets_the_mean():
    scores = [1, 0, 1, 1, 0, 1, 0, 1, 1, 1]
    a, b = M.mean_with_ci(scores), M.mean_with_ci(scores)
    assert a == b
    assert set(a) == {"value", "stderr", "ci_low", "ci_high", "n"}
    assert a["value"] == pytest.approx(0.7) and a["n"] == 10
    assert a["stderr"] == pytest.approx(math.sqrt(0.7 * 0.3 * 10 / 9) / math.sqrt(10))
    assert a["ci_low"] <= 0.7 <= a["ci_high"] and a["ci_high"] - a["ci_low"] > 0.2


def test_ratio_metric_ci_bootstraps_documents():
    lps, toks = [-10.0, -30.0, -12.0, -25.0], [10, 10, 10, 10]
    out = M.ratio_metric_with_ci(M.token_perplexity, lps, toks)
    assert out["value"] == pytest.approx(math.exp(77 / 40))
    assert out["ci_low"] <= out["value"] <= out["ci_high"] and out["stderr"] > 0 and out["n"] == 4
    single = M.ratio_metric_with_ci(M.token_perplexity, [-10.0], [10])
    assert single["stderr"] == 0.0 and single["ci_low"] == single["ci_high"] == single["value"]


def test_corpus_metrics_in_log_space_never_overflow():
    import warnings

    lps, toks = [-10.0, -30.0, -20.0, -50.0], [10, 10, 10, 10]
    out = M.corpus_metric_with_ci("token_perplexity", lps, toks)
    assert out["value"] == pytest.approx(math.exp(110 / 40))
    old = M.ratio_metric_with_ci(M.token_perplexity, lps, toks)  # the direct computation, same resamples
    assert out["stderr"] == pytest.approx(old["stderr"], rel=1e-9)
    assert old["ci_low"] * 0.98 <= out["ci_low"] <= out["value"] <= out["ci_high"] <= old["ci_high"] * 1.02
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "overflow encountered in square" was the symptom
        huge = M.corpus_metric_with_ci("word_perplexity", [-30000.0, -20000.0, -40000.0], [10, 12, 9])
        bpb = M.corpus_metric_with_ci("bits_per_byte", [-30000.0, -20000.0, -40000.0], [100, 120, 90])
    assert huge["value"] == math.inf and huge["ci_high"] == math.inf and huge["stderr"] == math.inf
    assert bpb["value"] == pytest.approx(90000 / (310 * math.log(2)))
    assert bpb["ci_low"] <= bpb["value"] <= bpb["ci_high"]


def test_words_countable_detects_cjk_text():
    assert M.cjk_share(["東京都"]) == 1.0 and M.cjk_share(["abc"]) == 0.0 and M.cjk_share([" "]) == 0.0
    assert M.words_countable(["冷蔵庫の保証は一年です。"]) [0] is False
    assert M.words_countable(["The SK-R450 (冷蔵庫) has a one-year warranty."]) == (True, None)
    assert M.words_countable(["冷蔵庫"], language="en") == (True, None)
    ok, reason = M.words_countable(["plain English"], language="ja")
    assert not ok and "ja" in reason
