"""Exact and near deduplication on planted duplicates (ja and en), diversity selection, quality filters."""

from __future__ import annotations

from kogata.data import dedup, filters

EN = (
    "Our support line is open on weekdays from 9:00 to 18:00 and on Saturdays from 10:00 to 17:00. "
    "It is closed on Sundays, national holidays and over the New Year break. Chat in the SakuraHome app "
    "is available every day, and e-mails are answered within two business days."
)
JA = (
    "サポートダイヤルは平日9時から18時、土曜は10時から17時まで受け付けています。日曜・祝日と年末年始はお休みを"
    "いただいています。SakuraHomeアプリのチャットは毎日ご利用いただけます。メールには2営業日以内にご返信します。"
)
OTHER_EN = "The SK-W800 drum washer dries a full load in about three hours and uses a heat pump to save energy at night."
OTHER_JA = "ロボット掃除機SK-V90は、部屋の形を覚えて効率よく掃除します。ブラシは消耗品のため、半年ごとの交換をおすすめします。"


def test_exact_duplicates_ignore_case_and_whitespace():
    texts = [EN, OTHER_EN, EN.upper().replace(" ", "  "), JA, JA.replace("。", "。\n")]
    dups = dedup.exact_duplicates(texts)
    assert [(d.index, d.of) for d in dups] == [(2, 0), (4, 3)]


def test_near_duplicates_one_word_changed_ja_and_en():
    en_edit = EN.replace("two business days", "three business days")
    ja_edit = JA.replace("毎日", "平日")
    texts = [EN, OTHER_EN, JA, en_edit, OTHER_JA, ja_edit]
    sigs = dedup.signatures(texts)
    found = {d.index: d.of for d in dedup.near_duplicates(sigs, 0.8)}
    assert found == {3: 0, 5: 2}
    assert dedup.near_duplicates(sigs, 0.99) == []  # a strict threshold keeps the edits


def test_select_diverse_is_deterministic_and_spreads():
    texts = [EN, EN + " Extra.", EN + " More.", JA, JA + "以上。", OTHER_EN, OTHER_JA]
    sigs = dedup.signatures(texts)
    first = dedup.select_diverse(sigs, 3, seed=1)
    assert first == dedup.select_diverse(dedup.signatures(texts), 3, seed=1)
    groups = [{0, 1, 2}, {3, 4}, {5}, {6}]
    assert len(first) == 3 and all(sum(i in g for i in first) <= 1 for g in groups)  # never two from one group
    assert dedup.select_diverse(sigs, 10) == list(range(7))


def test_quality_filters():
    cfg = filters.FilterConfig(min_chars=20, max_chars=300, langs=("ja", "en"))
    assert filters.check(EN, "en", cfg) == (None, "")
    assert filters.check(JA, "ja", cfg) == (None, "")
    assert filters.check("短すぎる", "ja", cfg)[0] == "too_short"
    assert filters.check(EN * 3, "en", cfg)[0] == "too_long"
    assert filters.check("お得なセール開催中!\n" * 8, "ja", cfg)[0] == "repetitive"
    assert filters.check("ああああああああああああああああああああああああ", "ja", cfg)[0] == "repetitive"
    assert filters.check("★☆★☆ ♪♪♪ ■□■□ →→→ ※※※ ◆◇◆◇ 今だけ", "ja", cfg)[0] == "symbols"
    assert filters.check("Le chat est sur la table et il dort bien.", "latin", cfg)[0] == "language"
    assert filters.check("", "und", cfg)[0] == "empty"


def test_language_detection():
    assert filters.detect_language(JA) == "ja"
    assert filters.detect_language("SK-R450の保証は1年です") == "ja"  # Latin model numbers inside Japanese
    assert filters.detect_language(EN) == "en"
    assert filters.detect_language("这是一个中文句子，没有假名，用于测试语言识别功能是否正常工作。") == "zh"
    assert filters.detect_language("안녕하세요 반갑습니다") == "ko"
    assert filters.detect_language("12345 67890") == "und"
