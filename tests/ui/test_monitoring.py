"""The monitoring page (in process): the drift signals per served alias from the audit log against the monitor's
reference, the server's own last check, the plain-language verdict in ja/en, the link to the HTML monitor report,
and what the page says on a server without monitoring."""

from __future__ import annotations

import re
import time

import pytest

from tests.ui.conftest import REFERENCE_JA
from tests.ui.test_i18n import _visible_text


def _section(html: str, alias: str) -> str:
    m = re.search(r'<section[^>]*data-alias="' + re.escape(alias) + r'".*?</section>', html, re.S)
    assert m, f"no section for {alias}"
    return m.group(0)


def _status(section: str, signal: str) -> str:
    m = re.search(r'<tr data-signal="' + re.escape(signal) + r'" data-status="([a-z]+)"', section)
    assert m, f"no row for {signal}"
    return m.group(1)


def test_alias_status_flags_the_shift_of_one_alias_only(gaps_home):
    from kogata.ops.audit import AuditLog
    from kogata.ops.audit.export import parse_since
    from kogata.ops.drift.status import alias_status, cached_reference, signal_rows

    log = AuditLog.open(gaps_home)
    reference = cached_reference([gaps_home / "reference.jsonl"])
    assert len(reference) == len(REFERENCE_JA)
    prod, cand = alias_status(log, reference, ["prod", "candidate"], since_us=parse_since("1h"), min_window=10)
    log.close()
    rows = {r["name"]: r for r in signal_rows(prod.report, "ja")}
    assert prod.alias == "prod" and rows["language_mix"]["status"] == "alert"
    assert rows["language_mix"]["effect"] >= rows["language_mix"]["threshold"]
    assert "日本語の質問" in rows["language_mix"]["message"]
    assert {r["name"]: r["status"] for r in signal_rows(cand.report, "en")}["language_mix"] == "ok"


def test_cached_reference_reads_a_changed_file_again(tmp_path):
    import json
    import os

    from kogata.ops.drift.status import cached_reference

    path = tmp_path / "ref.jsonl"
    path.write_text(json.dumps({"question": "返品できますか"}) + "\n", encoding="utf-8")
    assert [x.question for x in cached_reference([path])] == ["返品できますか"]
    path.write_text(json.dumps({"question": "配送は何日ですか"}) + "\n" + json.dumps({"question": "送料は？"}) + "\n", encoding="utf-8")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert [x.question for x in cached_reference([path])] == ["配送は何日ですか", "送料は？"]


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_monitoring_page_shows_each_alias_signals_and_verdict(gaps_client, lang):
    html = gaps_client.get("/ui/monitoring", params={"lang": lang}).text
    prod, cand = _section(html, "prod"), _section(html, "candidate")
    assert _status(prod, "language_mix") == "alert" and _status(cand, "language_mix") == "ok"
    assert ("警告" if lang == "ja" else "Alert") in prod
    verdict = re.search(r'class="verdict alert"[^>]*>(.*?)</p>', prod, re.S).group(1)
    assert ("日本語の質問" if lang == "ja" else "Japanese questions") in verdict
    assert ("日本語と英語の比率" if lang == "ja" else "Japanese / English mix") in prod  # the signal in plain words
    assert 'id="monitoring-off"' not in html
    assert not re.search(r"\[[a-z]+_[a-z_]+\]", _visible_text(html)), "a catalog key is missing"


def test_the_servers_own_check_is_shown_once_it_ran(gaps_client):
    deadline = time.monotonic() + 20
    while gaps_client.app.state.kogata.drift is None:  # the monitor loop checks right after startup
        assert time.monotonic() < deadline, "the server's monitor loop did not report within 20 s"
        time.sleep(0.1)
    html = gaps_client.get("/ui/monitoring", params={"lang": "ja"}).text
    assert 'id="h-server"' in html and "全モデル" in html
    server = re.search(r'<table class="signals" id="server-signals">.*?</table>', html, re.S).group(0)
    assert 'data-signal="language_mix" data-status="alert"' in server  # prod's English traffic dominates all traffic
    home = gaps_client.get("/ui/", params={"lang": "ja"}).text
    assert 'id="home-drift"' in home and 'href="/ui/monitoring"' in home


def write_monitor_report(home):
    """The HTML report as `kogata monitor report --out $KOGATA_HOME/monitor --window 20` writes it."""
    from kogata.ops.audit import AuditLog
    from kogata.ops.drift import Thresholds, reference_from_files, rolling, served
    from kogata.ops.drift.status import REPORT_DIR, REPORT_FILE
    from kogata.report.monitor import write_monitor_report as write

    log = AuditLog.open(home)
    windows = rolling(served(log, alias="prod"), reference_from_files([home / "reference.jsonl"]), 20,
                      thresholds=Thresholds(min_window=10))
    log.close()
    (home / REPORT_DIR).mkdir(exist_ok=True)  # as the CLI makes --out
    return write(windows, home / REPORT_DIR / REPORT_FILE, "ja")


def test_the_monitor_report_is_linked_only_when_it_exists(gaps_client, gaps_home):
    from kogata.ops.drift.status import REPORT_DIR, REPORT_FILE

    (gaps_home / REPORT_DIR / REPORT_FILE).unlink(missing_ok=True)
    assert 'id="monitor-report-link"' not in gaps_client.get("/ui/monitoring").text
    missing = gaps_client.get("/ui/monitoring/report.html", params={"lang": "en"})
    assert missing.status_code == 404 and "kogata monitor report --out $KOGATA_HOME/monitor" in missing.text
    write_monitor_report(gaps_home)
    assert 'id="monitor-report-link"' in gaps_client.get("/ui/monitoring").text
    r = gaps_client.get("/ui/monitoring/report.html")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"].startswith("sandbox")
    assert "<html" in r.text[:2000].lower()


def test_a_server_without_monitoring_says_how_to_set_it_up(client):
    for lang, words in (("ja", "ドリフト監視が設定されていません"), ("en", "Drift monitoring is not set up")):
        html = client.get("/ui/monitoring", params={"lang": lang}).text
        assert 'id="monitoring-off"' in html and words in html
        assert "data-alias=" not in html
        assert words in client.get("/ui/", params={"lang": lang}).text


def test_monitoring_needs_a_viewer_off_loopback(offloop_client):
    r = offloop_client.get("/ui/monitoring", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")
    assert offloop_client.get("/ui/monitoring/report.html", follow_redirects=False).status_code == 303
