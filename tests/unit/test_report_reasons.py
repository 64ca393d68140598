"""Skip and failure reasons are catalog keys: the Japanese optimize report words them in Japanese, results.json
keeps the English text beside the key, and rows from runs before the keys still render."""

from __future__ import annotations

import re
import string

import pytest

from kogata.optimize.reasons import REASONS, Reason, failed, stored_fields
from kogata.report.i18n import STRINGS
from tests.unit.test_report import _visible_text, optimize_results

SAMPLES = [  # one of every reason the search writes (optimize/candidates.py, optimize/loop.py)
    Reason("reason_smaller_passes", {"label": "baseline (float)"}),
    Reason("reason_quantizes_harder", {"label": "Q8_0", "gates": "faq.f1, intent.acc", "quant": "Q4_0"}),
    Reason("reason_no_budget", {"need_min": 3.25, "left_min": 1.0}),
    Reason("reason_no_budget_confirm", {"need_min": 2.5}),
    failed("llama.cpp could not load the file"),
]


def _fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


def test_every_reason_key_is_in_both_catalogs_with_the_same_placeholders():
    assert {r.key for r in SAMPLES} == set(REASONS)
    for key, english in REASONS.items():
        assert STRINGS["en"][key] == english, key  # the terminal and the English report say the same
        assert key in STRINGS["ja"] and STRINGS["ja"][key] != english, key
        assert _fields(STRINGS["ja"][key]) == _fields(english), key


def test_unknown_key_is_refused():
    with pytest.raises(ValueError, match="reason_typo"):
        Reason("reason_typo")


def test_stored_reason_round_trip_and_rows_from_older_runs():
    for r in SAMPLES:
        assert stored_fields(r.dumps()) == r.fields() == {"reason": r.text, "reason_key": r.key, "reason_params": r.params}
    assert stored_fields("out of memory") == {"reason": "out of memory", "reason_key": None, "reason_params": None}
    assert stored_fields("{not json") == {"reason": "{not json", "reason_key": None, "reason_params": None}
    assert stored_fields(None)["reason"] is None


def _with_reasons(language: str) -> dict:
    res = optimize_results(language)
    rows = res["optimize"]["candidates"]
    template = rows[-1]  # the skipped Q8_0 row
    rows[-1:] = [{**template, "key": f"r{i}", "label": f"cand{i}", "status": "failed" if r.key == "reason_failed" else "skipped",
                  **r.fields()} for i, r in enumerate(SAMPLES)]
    rows.append({**template, "key": "old", "label": "old-run", "status": "skipped",
                 "reason": "kept from an earlier release", "reason_key": None, "reason_params": None})
    return res


def test_japanese_optimize_report_has_no_english_skip_reason():
    from kogata.report.optimize import render_html, render_markdown

    res = _with_reasons("ja")
    html, md = render_html(res), render_markdown(res)
    text = re.sub(r"\s+", " ", _visible_text(html))
    for r in SAMPLES:
        if r.key == "reason_failed":  # the error itself is the program's message, quoted as it was
            assert "エラー（原文）: llama.cpp could not load the file" in text
            continue
        assert r.text not in text and r.text not in md, r.key
        for part in re.split(r"\{[^}]*\}", REASONS[r.key]):
            part = part.strip(" .,;()~")
            if len(part) >= 6:
                assert part not in text and part not in md, (r.key, part)
    assert "ベースライン（浮動小数点モデル） がすでにすべての KPI を満たしており" in text  # the label is localized too
    assert "約 3.2 分必要、残り 1.0 分" in text and "約 2.5 分必要" in md
    assert "Q8_0 がすでに faq.f1, intent.acc を満たしておらず、Q4_0 はさらに強く量子化します" in md
    assert "kept from an earlier release" in text  # a row from before the keys: its text as written


def test_english_report_reads_as_the_terminal_did():
    from kogata.report.optimize import render_html, render_markdown

    res = _with_reasons("en")
    text, md = re.sub(r"\s+", " ", _visible_text(render_html(res))), render_markdown(res)
    assert "not enough budget left (needs ~3.2 min, 1.0 min left)" in text and "not enough budget left (needs ~3.2 min" in md
    assert "cannot be smaller than baseline (float), which already passes every KPI" in md
    assert "llama.cpp could not load the file" in text


def test_japanese_optimize_report_units_and_details_language(tmp_path):
    from kogata.report.optimize import build_view, write

    res = optimize_results("ja")
    view = build_view(res)
    done = [c for c in view["candidates"] if c["latency"]]
    assert done and all(c["latency"].endswith(" ms") and c["memory"].endswith(" MiB") for c in done)
    assert "-0.0%" not in "".join(x["change"] for x in view["before_after"])
    q4 = next(c for c in view["candidates"] if c["label"] == "Q4_0")
    assert q4["kept"] and q4["gate_text"]
    res["machine"].update(logical_cores=2, physical_cores=1, ram_gb=8.0, os="Linux")  # as machine_info() records it
    res["suite"]["language"] = "en"  # the suite is English, the project Japanese: details.html follows the project
    paths = write(res, tmp_path)
    raw = paths["details"].read_text(encoding="utf-8")
    details = _visible_text(raw).split("予測の例")[0]  # before the sample predictions (the suite's own texts)
    assert "評価レポート" in details and "Evaluation report" not in details
    for english in ("physical", " min", "cores"):
        assert english not in details, english
    axis_titles = re.findall(r'"title":\{"text":"([^"]*)"', raw)
    assert axis_titles and not [a for a in axis_titles if "better" in a.encode().decode("unicode_escape")]
    summary = paths["markdown"].read_text(encoding="utf-8")
    row = next(line for line in summary.splitlines() if line.startswith("| Q4_0 |"))
    assert q4["kept"] in row and q4["gate_text"] in row  # the markdown table shows the kept share as the HTML does
