"""The HTML report and Markdown summary render a results document offline, in English and Japanese."""

from __future__ import annotations

import copy
import re

import pytest

from kogata.eval.cost import add_savings, estimate_cost, load_price
from kogata.eval.kpi import check_kpis, flat_metrics
from kogata.report import render_html, render_markdown, write_reports

KPIS = {"min": {"faq.f1": 0.3}, "max": {"latency_p95_ms": 2000}}


def _entry(name, runtime, f1, p95, decode, profile, error=None):
    quality = {
        "faq": {"type": "generate", "version": 1, "n": 10,
                "metrics": {"f1": {"value": f1, "stderr": 0.05, "ci_low": f1 - 0.1, "ci_high": f1 + 0.1, "n": 10}},
                "samples": [{"prompt": "Q: <b>warranty?</b>", "prediction": "one year", "target": "one year", "f1": 1.0}]},
        "ppl": {"type": "perplexity", "version": 1, "n": 3,
                "metrics": {"bits_per_byte": {"value": 1.2, "stderr": None, "ci_low": None, "ci_high": None, "n": 3}}, "samples": []},
    }
    efficiency = {
        "load_s": 1.5, "prefill_tok_s": {"min": 90.0, "median": 100.0, "max": 110.0},
        "decode_tok_s": {"min": decode - 1, "median": decode, "max": decode + 1},
        "latency": {"n": 8, "ttft_p50_ms": 120.0, "ttft_p95_ms": 150.0, "latency_p50_ms": p95 / 2, "latency_p95_ms": p95},
        "peak_rss_mb": 512.0,
        "metrics": {"load_s": 1.5, "prefill_tok_s": 100.0, "decode_tok_s": decode, "ttft_p50_ms": 120.0, "ttft_p95_ms": 150.0,
                    "latency_p50_ms": p95 / 2, "latency_p95_ms": p95, "peak_rss_mb": 512.0, "disk_mb": 100.0, "params_m": 135.0},
    }
    if error:
        quality = efficiency = None
    return {
        "key": f"{name}@{runtime}",
        "artifact": {"id": name[:4] + "0123456789ab", "name": name, "format": "hf" if runtime == "torch" else "gguf",
                     "kind": "causal-lm", "architecture": "llama", "params": 135_000_000, "bytes": 100 * 2**20, "parent": None,
                     "lineage": [{"method": "import"}, {"method": "quantize"}], "path": "/x"},
        "runtime": {"name": runtime, "options": {}, "info": {"threads": 2, "dtype": "float32"}},
        "threads": 2, "status": "error" if error else "ok", "error": error,
        "quality": quality, "efficiency": efficiency,
        "cost": estimate_cost(100.0, decode, profile) if not error else None,
        "timings": {},
    }


def fake_results(language="en"):
    profile = load_price("cloud-2vcpu-jpy")
    entries = [_entry("base-model", "torch", 0.45, 1800.0, 20.0, profile),
               _entry("small-model", "llamacpp", 0.25, 900.0, 60.0, profile),
               _entry("broken-model", "llamacpp", 0, 0, 1, profile, error="RuntimeError: model file is truncated")]
    add_savings({e["key"]: e["cost"] for e in entries}, "base-model@torch")
    for e in entries:
        e["metrics"] = flat_metrics(e["quality"], e["efficiency"], e["cost"])
        e["kpi"] = check_kpis(KPIS, e["metrics"])
        e["verdict"] = "ERROR" if e["error"] else e["kpi"]["verdict"]
    return {
        "schema_version": 1, "kogata_version": "0.1.0", "created": "2026-03-01T10:00:00+00:00", "finished": "2026-03-01T10:05:00+00:00",
        "duration_s": 300.0,
        "suite": {"name": "tiny-suite", "version": 1, "language": language, "description": "A suite for tests.", "path": "/s.yaml",
                  "sha256": "ab" * 32, "seed": 1234, "tasks": [{"name": "faq", "type": "generate", "version": 1},
                                                               {"name": "ppl", "type": "perplexity", "version": 1}],
                  "kpis": KPIS, "efficiency": {"prompt_tokens": 128, "gen_tokens": 32, "repeats": 3, "warmup": 1, "latency_prompts": 8},
                  "price": "cloud-2vcpu-jpy", "baseline": None},
        "settings": {"limit": 10, "threads": 2, "runtimes": ["torch", "llamacpp"], "runtime_options": {}, "skipped": []},
        "price": profile.to_dict(), "baseline": "base-model@torch",
        "machine": {"cpu": "Test CPU 3000", "logical_cores": 2, "usable_cores": 2, "physical_cores": 1, "ram_gb": 24.0,
                    "os": "Linux", "python": "3.11", "arch": "x86_64"},
        "versions": {"python": "3.11", "torch": "2.13.0", "llama_cpp": "0.3.36"},
        "entries": entries,
    }


def test_html_is_self_contained_and_shows_verdicts():
    html = render_html(fake_results())
    assert not re.search(r"<script[^>]+src=", html), "no external scripts"
    assert not re.search(r"<link[^>]+href=", html) and not re.search(r"@import", html[:20000])
    assert len(re.findall(r"<script[^>]*>", html)) == 1 + 2  # plotly.js once, then one small script per chart
    assert html.count("Plotly.newPlot") == 2  # quality vs latency, quality vs memory
    for text in ("tiny-suite", "Test CPU 3000", "PASS", "FAIL", "ERROR", "model file is truncated", "faq.f1", "latency_p95_ms",
                 "small-model", "¥", "Sample predictions", "import → quantize"):
        assert text in html, text
    assert "&lt;b&gt;warranty?&lt;/b&gt;" in html  # sample text is escaped
    assert "at most 10 items per task" in html


def test_failed_gate_is_named_on_the_card():
    html = render_html(fake_results())
    card = html[html.index("small-model"):]
    card = card[: card.index("</div>\n  </div>") if "</div>\n  </div>" in card else 2000]
    assert "faq.f1" in card


def test_japanese_report():
    html = render_html(fake_results("ja"))
    assert 'lang="ja"' in html and "評価レポート" in html and "合格" in html and "不合格" in html
    md = render_markdown(fake_results("ja"))
    assert "評価レポート" in md


def test_markdown_summary_and_files(tmp_path):
    md = render_markdown(fake_results())
    assert "| base-model · torch (baseline) | **PASS** |" in md
    assert "**FAIL** — faq.f1" in md and "**ERROR** — RuntimeError" in md
    paths = write_reports(fake_results(), tmp_path)
    assert paths["html"].read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert paths["markdown"].is_file()


def test_renders_without_charts_or_kpis():
    res = fake_results()
    res["suite"]["kpis"] = {}
    for e in res["entries"]:
        e["efficiency"], e["cost"] = None, None
        e["metrics"] = flat_metrics(e["quality"], None, None)
        e["kpi"] = check_kpis({}, e["metrics"])
    html = render_html(copy.deepcopy(res))
    assert "The suite sets no KPIs." in html and "Plotly.newPlot" not in html


@pytest.mark.parametrize("lang", ["en", "ja", "fr"])
def test_every_language_has_every_string(lang):
    from kogata.report.i18n import STRINGS, strings

    assert set(strings(lang)) == set(STRINGS["en"])
    assert set(STRINGS["ja"]) == set(STRINGS["en"])


def test_busy_machine_and_localised_price_description():
    res = fake_results("ja")
    res["entries"][0]["efficiency"]["load_avg"] = {"before": 6.5, "after": 7.0}
    res["entries"][0]["efficiency"]["machine"] = {"usable_cores": 2}
    res["entries"][1]["efficiency"]["load_avg"] = {"before": 1.5, "after": 2.0}
    html = render_html(res)
    assert "混雑" in html and "7.0" in html
    assert "約15円/時" in html  # the profile's description_ja
    en = fake_results()
    en["entries"][1]["efficiency"]["load_avg"] = {"before": 2.0, "after": 2.1}
    assert "was busy" not in render_html(en)
    en["entries"][1]["efficiency"]["load_avg"] = {"before": 5.0, "after": 2.1}
    assert "was busy while speed was measured (small-model · llamacpp" in render_html(en)
    assert "⚠" in render_markdown(en)


# ---- the optimize report: same templates, same catalog ---------------------------------------------
def optimize_results(language="en"):
    from kogata.optimize.decide import decide

    res = fake_results(language)
    res["entries"] = res["entries"][:2]
    for e, label, scores in zip(res["entries"], ("baseline (float)", "Q4_0"), ([1, 0, 1, 1, 0, 1, 1, 0, 1, 1], [0, 1, 1, 1, 0, 1, 1, 0, 1, 1])):
        e["candidate"] = {"key": e["key"], "label": label, "family": "quantize", "steps": []}
        e["quality"]["faq"]["per_item"] = {"id": [f"q{i}" for i in range(10)], "f1": scores}
    res["entries"][1]["kpi"] = check_kpis({"max": {"latency_p95_ms": 2000}}, res["entries"][1]["metrics"])
    res["entries"][1]["verdict"] = "PASS"
    res["machine"] = {"cpu": "Test CPU 3000", "usable_cores": 2,
                      "contention": {"contended": True, "busy_cores": 1.9, "usable_cores": 2, "threads_used": 1, "threads_requested": 2}}
    res["settings"]["screen_items"] = 5
    res["optimize"] = {
        "run_id": "r1",
        "project": {"path": "/p/kogata.yaml", "name": "tiny", "base": "base-model", "suite": "tiny-suite", "runtime": "llamacpp",
                    "threads": 2, "language": language},
        "candidates": [{"key": e["key"], "label": e["candidate"]["label"], "status": "done", "reason": None, "entry": e["key"]}
                       for e in res["entries"]] + [{"key": "q8", "label": "Q8_0", "status": "skipped", "reason": None, "entry": None}],
        "decision": decide(res["entries"], res["baseline"]),
    }
    return res


def _visible_text(html):
    """The words a reader sees, without scripts, styles and code (commands and artifact names are not UI text)."""
    html = re.sub(r"<(script|pre|code)\b.*?</\1>", " ", html, flags=re.S)
    html = re.sub(r"<style.*?</style>", " ", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


def test_catalogs_have_the_same_keys():
    from kogata.report.i18n import STRINGS

    assert set(STRINGS["en"]) == set(STRINGS["ja"]) and len(STRINGS["en"]) > 100
    assert {k for k, v in STRINGS["ja"].items() if v == STRINGS["en"][k] and re.search(r"[a-z]{4,}", v)} <= {"prefill", "decode"} | {
        k for k in STRINGS["en"] if k.startswith(("cpu", "os", "opt_verdict", "opt_gate", "unknown"))}


def test_japanese_optimize_report_has_no_english_ui_strings():
    from kogata.report.i18n import STRINGS
    from kogata.report.optimize import render_html, render_markdown

    res = optimize_results("ja")
    dec = res["optimize"]["decision"]
    # Q4_0 passes the KPIs, but on 10 items it cannot be told from the baseline: the baseline stays the pick
    assert dec["recommended"] == res["baseline"] and [n["key"] for n in dec["notes"]] == ["note_needs_items"], dec["notes"]
    html, md = render_html(res), render_markdown(res)
    text = _visible_text(html)
    md = re.sub(r"```.*?```|`[^`]*`", " ", md, flags=re.S)
    assert 'lang="ja"' in html and "推奨モデル" in html and "件数が足りません" in text and "混雑" in text
    for key, en in STRINGS["en"].items():
        if STRINGS["ja"][key] == en:
            continue
        for part in re.split(r"\{[^}]*\}", en):  # the literal pieces of each English string
            part = part.strip(" .,:;()[]·—-")
            if len(part) >= 6 and re.search(r"[A-Za-z]{4}", part):
                assert part not in text, (key, part)
                assert part not in md, (key, part)
    for word in ("threads", "suite", "% short", "try a gentler", "Measured on"):  # the English seen in earlier ja reports
        pattern = rf"(?<![-\w]){re.escape(word)}(?![-\w])"  # "tiny-suite" is the suite's name, not UI text
        assert not re.search(pattern, text) and not re.search(pattern, md), word


def test_optimize_report_machine_and_money_axis():
    from kogata.report.optimize import render_html, render_markdown

    res = optimize_results("en")
    html = render_html(res)
    assert "Measured on: Test CPU 3000" in _visible_text(html).replace("  ", " ")
    assert '"tickprefix":"\\u00a5"' in html and '"tickformat":",.0f"' in html  # "¥17,361", not "17.3605k"
    res["machine"] = {}
    md = render_markdown(res)
    assert "Measured on: —" in md and "Measured on: ," not in md
    assert "interval of the difference" in md and "more items" in md
