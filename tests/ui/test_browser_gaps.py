"""The playground's comparison and document search, the monitoring page with live drift signals, and the wizard's
upload limit — in Debian's chromium (Playwright, 127.0.0.1 only), on a server with two served models, a document
index, a monitor reference and an hour of traffic (``gaps_home``). Every new state has 0 axe violations (WCAG 2.x
A/AA), is reached by keyboard, and is screenshotted (``$KOGATA_UI_SHOTS``; docs/ui/ holds the Japanese ones)."""

from __future__ import annotations

import json
import re

import pytest

from tests.ui.test_browser import axe_violations
from tests.ui.test_monitoring import write_monitor_report
from tests.ui.test_playground import fixed_words

WAIT_MS = 30_000


def _clean(page) -> None:
    found = axe_violations(page)
    assert found == [], json.dumps(found, ensure_ascii=False, indent=1)
    assert page.console_errors == [], page.console_errors


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_monitoring_shows_the_drift_signals_per_alias(live_gaps, gaps_home, page_factory, shots_dir, lang):
    write_monitor_report(gaps_home)
    page = page_factory(lang)
    page.goto(live_gaps.url + "/ui/monitoring")
    prod = page.locator('section[data-alias="prod"]')
    row = prod.locator('tr[data-signal="language_mix"]')
    assert row.get_attribute("data-status") == "alert"
    assert row.locator(".pill").text_content() == ("警告" if lang == "ja" else "Alert")
    assert page.locator('section[data-alias="candidate"] tr[data-signal="language_mix"]').get_attribute("data-status") == "ok"
    verdict = prod.locator(".verdict").text_content() or ""
    assert ("日本語の質問" if lang == "ja" else "Japanese questions") in verdict
    page.screenshot(path=str(shots_dir / f"{lang}-monitoring-signals.png"), full_page=True)
    _clean(page)
    page.focus("#monitor-report-link")  # keyboard: the report opens with Enter
    page.keyboard.press("Enter")
    page.wait_for_url(live_gaps.url + "/ui/monitoring/report.html", timeout=WAIT_MS)
    assert page.locator("body").text_content().strip() != ""


def test_compare_two_models_side_by_side_by_keyboard(live_gaps, gaps_home, page_factory, shots_dir):
    from kogata.ops.audit import AuditLog

    page = page_factory("ja")
    page.goto(live_gaps.url + "/ui/playground")
    question = "返品の送料はかかりますか？"
    page.focus("#compare-input")
    page.keyboard.insert_text(question)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "compare-send"
    page.keyboard.press("Enter")
    page.wait_for_function("() => ['a', 'b'].every(s => ['done', 'error'].includes(document.getElementById('side-' + s).dataset.state))",
                           timeout=WAIT_MS)
    for side, alias in (("a", "candidate"), ("b", "prod")):
        box = page.locator(f"#side-{side}")
        assert box.get_attribute("data-state") == "done", page.text_content("#compare-status")
        assert box.locator(".alias").text_content() == alias
        assert re.fullmatch(r"\d+ ミリ秒", box.locator(".latency").text_content() or ""), box.locator(".latency").text_content()
        assert re.fullmatch(r"\d+／\d+", box.locator(".tokens").text_content() or ""), box.locator(".tokens").text_content()
        prompt, completion = (int(n) for n in box.locator(".tokens").text_content().split("／"))
        assert prompt > 0 and completion >= 0
    log = AuditLog.open(gaps_home)
    asked = {e.record.model_alias for e in log.iter_rows() if e.record.key_name == "ui:local"
             and question in json.dumps(e.record.input, ensure_ascii=False)}
    log.close()
    assert asked == {"candidate", "prod"}  # one real request to each served model, through the API's path
    page.screenshot(path=str(shots_dir / "ja-playground-compare.png"), full_page=True)
    _clean(page)


def test_search_documents_toggle_gives_a_grounded_answer(live_gaps, page_factory, shots_dir):
    page = page_factory("ja")
    page.goto(live_gaps.url + "/ui/playground")
    page.focus("#chat-search")
    page.keyboard.press("Space")  # keyboard: the checkbox toggles
    assert page.is_checked("#chat-search")
    page.select_option("#chat-model", "prod")
    page.fill("#chat-input", "返品は何日以内ですか？")
    page.press("#chat-input", "Enter")
    page.wait_for_selector("#chat-log li.assistant.grounded", timeout=WAIT_MS)
    answer = page.locator("#chat-log li.assistant.grounded").last
    assert answer.get_attribute("data-status") in ("answered", "not_found")
    assert re.search(r"検索 \d+ ミリ秒、回答全体 \d+ ミリ秒", answer.locator(".timing").text_content() or "")
    assert (answer.locator(".body").text_content() or "").strip() != ""
    page.fill("#chat-input", "天気はどうですか")  # nothing in the documents: said so, without asking the model
    page.press("#chat-input", "Enter")
    page.wait_for_function("() => document.querySelectorAll('#chat-log li.assistant.grounded').length === 2", timeout=WAIT_MS)
    last = page.locator("#chat-log li.assistant.grounded").last
    assert last.get_attribute("data-status") == "not_found" and last.locator(".body").text_content() == "資料に記載がありません。"
    assert page.text_content("#chat-status") == ""
    _clean(page)


def test_cited_passages_are_listed_under_the_answer(live_gaps, page_factory, shots_dir, monkeypatch):
    """The tiny random model never writes [1]: here the served model's words are fixed (``fixed_words``) and
    everything else is real — the page posts to the live ``/ui/playground/grounded``, which retrieves from the index,
    asks the model through the served path and answers in its own shape."""
    seen = fixed_words(monkeypatch, live_gaps.app, "prod", "商品到着から30日以内であれば返品できます [1]。")
    answers = []
    page = page_factory("ja")
    page.on("response", lambda r: r.url.endswith("/ui/playground/grounded") and answers.append(r))
    page.goto(live_gaps.url + "/ui/playground")
    page.check("#chat-search")
    page.select_option("#chat-model", "prod")
    page.fill("#chat-input", "返品は何日以内ですか？")
    page.press("#chat-input", "Enter")
    cites = page.locator("#chat-log li.grounded .citations li")
    cites.first.wait_for(timeout=WAIT_MS)
    assert cites.all_text_contents() == ["[1] 返品について (returns.md)"]
    assert page.locator("#chat-log li.grounded .sources-head").text_content() == "出典："
    answer = page.locator("#chat-log li.assistant.grounded").last
    assert answer.get_attribute("data-status") == "answered"
    assert answer.locator(".body").text_content() == "商品到着から30日以内であれば返品できます [1]。"
    assert re.search(r"検索 \d+ ミリ秒、回答全体 \d+ ミリ秒", answer.locator(".timing").text_content() or "")
    assert len(seen) == 1 and "[1] (returns.md" in seen[0].messages[-1]["content"]  # the model was asked with the passages
    assert len(answers) == 1 and answers[0].status == 200 and answers[0].json()["citations"][0]["source"] == "returns.md"
    page.screenshot(path=str(shots_dir / "ja-playground-search.png"), full_page=True)
    _clean(page)


def test_wizard_refuses_a_file_over_20_mb_before_sending_it(live_gaps, page_factory, shots_dir):
    page = page_factory("ja")
    page.goto(live_gaps.url + "/ui/runs/new")
    posts = []
    page.on("request", lambda r: r.method == "POST" and posts.append(r.url))
    page.set_input_files("#data", files=[{"name": "corpus.jsonl", "mimeType": "application/json", "buffer": b"x" * 20_000_001}])
    error = page.locator("#err-data")
    assert "20 MB" in (error.text_content() or "") and page.get_attribute("#data", "aria-invalid") == "true"
    page.click("#wizard-start")
    page.wait_for_timeout(300)
    assert posts == [] and page.url == live_gaps.url + "/ui/runs/new"
    assert page.evaluate("document.activeElement.id") == "data"  # the focus goes to the field to fix
    page.screenshot(path=str(shots_dir / "ja-wizard-too-large.png"))
    _clean(page)
    line = ('{"text": "' + "返品は30日以内" * 4 + '"}\n').encode("utf-8")
    page.set_input_files("#data", files=[{"name": "corpus.jsonl", "mimeType": "application/json", "buffer": line * (2_000_000 // len(line))}])
    assert page.locator("#err-data").count() == 0
    page.fill("#budget", "0")  # refused by the server, after it read the 2 MB file
    page.click("#wizard-start")
    page.wait_for_selector("#err-budget", timeout=WAIT_MS)
    assert page.locator("#err-data").count() == 0  # the file itself was accepted
