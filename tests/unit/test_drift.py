"""Drift signals on a simulated week of support-desk traffic written to a real audit log: no false alarm on
20 windows without a shift; an English → Japanese shift with new product names and longer questions is alerted
within 200 requests; each signal's test and threshold; `kogata monitor check` exits 1 on an alert."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kogata.ops.audit import AuditLog, AuditRecord
from kogata.ops.drift import Exchange, Thresholds, check, from_texts, rolling, served
from kogata.ops.drift import signals as sig
from tests.cli_helpers import run_cli

EN = ["How do I clean the filter of my {p}?", "My {p} makes a loud noise when it starts. What should I do?",
      "Is the {p} still under warranty after {n} months?", "Where can I download the manual for the {p}?",
      "The {p} shows error E{n}. How can I fix it?", "Can I return the {p} I bought {n} days ago?",
      "What is the power consumption of the {p} in eco mode?", "How long does delivery of a new {p} take?"]
JA = ["{p}のフィルターの掃除方法を教えてください。", "{p}の電源を入れると大きな音がします。どうすればよいですか？",
      "購入から{n}か月たった{p}は保証の対象ですか？", "{p}の取扱説明書はどこでダウンロードできますか？",
      "{p}にエラーE{n}が表示されます。直し方を教えてください。", "{n}日前に買った{p}は返品できますか？",
      "{p}のエコモードでの消費電力はどれくらいですか？詳しく知りたいので、仕様の表も合わせて教えてください。"]
OLD = ["air conditioner", "refrigerator", "washing machine", "rice cooker", "microwave"]
NEW = ["SH-Aero X9 purifier", "SakuraBot vacuum", "NanoDry 7 dryer"]


def question(rng: np.random.Generator, shifted: bool) -> str:
    ja = rng.random() < (0.6 if shifted else 0.1)
    products = NEW if shifted and rng.random() < 0.5 else OLD
    tpl = (JA if ja else EN)[rng.integers(len(JA if ja else EN))]
    q = tpl.format(p=products[rng.integers(len(products))], n=int(rng.integers(2, 40)))
    if shifted and rng.random() < 0.5:
        q += " I already tried restarting it twice and reading the FAQ, but nothing changed." if not ja else \
             "再起動もFAQの確認も二回試しましたが、変わりませんでした。"
    return q


def record(rng: np.random.Generator, i: int, shifted: bool) -> AuditRecord:
    q = question(rng, shifted)
    lp = float(rng.normal(-1.4 if shifted else -0.8, 0.25))
    return AuditRecord(request_id=f"req-{i}", response_id=f"chatcmpl-{i}", model_alias="production", artifact_id="a1",
                       endpoint="chat.completions", status="ok", action="allow", latency_ms=float(rng.normal(800, 80)),
                       tokens_in=len(q) // 3, tokens_out=40, input=[{"role": "user", "content": q}], output="ご案内します。",
                       verdicts={"output": {"action": "allow", "checks": [
                           {"check": "pii", "fired": bool(rng.random() < 0.05), "hits": []}]}},
                       meta={"mean_logprob": lp, "finish_reason": "stop"})


@pytest.fixture(scope="module")
def week(tmp_path_factory):
    """An audit log: 400 reference requests, 2,000 without a shift, then 600 shifted ones."""
    home = tmp_path_factory.mktemp("drift-home")
    log = AuditLog.open(home, checkpoint_every=10_000, checkpoint_seconds=3600)
    rng = np.random.default_rng(7)
    for i in range(3000):
        log.append(record(rng, i, shifted=i >= 2400))
    log.close()
    ex = served(log)
    return home, ex[:400], ex[400:2400], ex[2400:]


def test_no_false_alarm_on_20_quiet_windows(week):
    _, ref, quiet, _ = week
    reports = rolling(quiet, ref, 100)
    assert len(reports) == 20
    assert [r.alerts for r in reports] == [[] for _ in reports], [(i, [a.name for a in r.alerts]) for i, r in enumerate(reports)]
    assert all(r.verdict("ja").startswith("ドリフトなし") for r in reports)


def test_shift_alerted_within_200_requests(week):
    _, ref, quiet, shifted = week
    stream = quiet[-300:] + shifted  # the shift starts at position 300
    reports = rolling(stream, ref, 50)
    first = next(i for i, r in enumerate(reports) if r.alerts)
    delay = reports[first].window["last"] + 1 - 300
    assert 0 < delay <= 200, delay
    names = {a.name for a in reports[first].alerts}
    assert names & {"language_mix", "input_length", "confidence"}
    late = check(shifted[:200], ref)
    assert {"language_mix", "confidence"} <= {a.name for a in late.alerts}
    assert "Japanese questions" in late.verdict("en") and "日本語の質問" in late.verdict("ja")
    terms = [t["term"] for t in late.new_terms]
    assert any(t in terms for t in ("sakurabot", "nanodry", "sh-aero")), terms
    assert late.examples


def test_tokenizer_fit_sees_text_a_trimmed_vocabulary_splits():
    """A tokenizer trimmed to English: Japanese falls back to bytes (3 tokens per character)."""
    def count(text: str) -> int:
        return sum(3 if ord(c) > 127 else 0 for c in text) + max(1, sum(c.isascii() for c in text) // 4)

    rng = np.random.default_rng(1)
    ref = from_texts(question(rng, False).replace("。", ".") for _ in range(200))
    en_only = [x for x in ref if x.lang == "en"]
    cur = from_texts(question(rng, True) for _ in range(200))
    s = sig.tokenizer_fit(en_only, cur, Thresholds(), count)
    assert s.alert and s.effect > 1.3
    calm = sig.tokenizer_fit(en_only[:100], en_only[100:], Thresholds(), count)
    assert not calm.alert


def test_small_windows_never_alert_and_psi_is_zero_on_equal_samples():
    ref = from_texts(["短い質問"] * 100)
    few = from_texts(["まったく違うとても長い質問です。" * 10] * 10)
    s = sig.input_length(ref, few, Thresholds())
    assert s.status == "insufficient" and "50" in s.message["en"]
    x = np.log(np.arange(1, 500, dtype=float))
    assert sig.psi(x, x) == pytest.approx(0.0, abs=1e-9)


def test_embedding_mmd_permutation_test():
    rng = np.random.default_rng(0)
    a = [Exchange(question=f"a{i}") for i in range(60)]
    b = [Exchange(question=f"b{i}") for i in range(60)]
    vecs = {**{x.question: rng.normal(0, 1, 8) for x in a}, **{x.question: rng.normal(0, 1, 8) + 1.5 for x in b}}
    same = [Exchange(question=f"c{i}") for i in range(60)]
    vecs.update({x.question: rng.normal(0, 1, 8) for x in same})
    embed = lambda texts: np.stack([vecs[t] for t in texts])  # noqa: E731
    th = Thresholds(permutations=100)
    assert sig.embedding(a, b, th, embed).alert
    assert not sig.embedding(a, same, th, embed).alert


def test_monitor_check_cli(week, tmp_path, capsys, monkeypatch):
    home, ref, _, _ = week
    monkeypatch.setenv("KOGATA_HOME", str(home))
    refs = tmp_path / "reference.jsonl"
    refs.write_text("".join(json.dumps({"question": x.question, "answer": "…"}, ensure_ascii=False) + "\n" for x in ref),
                    encoding="utf-8")
    # the whole log (mostly quiet) against the reference questions: the last 600 requests are the shift
    code, out, err = run_cli(capsys, monkeypatch, "monitor", "check", "--reference", str(refs), "--last", "300", "--json")
    assert code == 1, err
    data = json.loads(out)
    assert "language_mix" in data["alerts"] and data["verdict"]["ja"]
    code, out, err = run_cli(capsys, monkeypatch, "monitor", "check", "--reference", str(refs), "--last", "300", "--skip-last", "700")
    assert code == 0, out + err
    assert "no drift" in out.lower()
    code, out, err = run_cli(capsys, monkeypatch, "monitor", "check", "--reference", str(tmp_path / "missing.jsonl"))
    assert code == 2 and "missing.jsonl" in err


def test_monitor_report_html_in_japanese(week, tmp_path, capsys, monkeypatch):
    home, ref, _, _ = week
    monkeypatch.setenv("KOGATA_HOME", str(home))
    refs = tmp_path / "reference.jsonl"
    refs.write_text("".join(json.dumps({"question": x.question}, ensure_ascii=False) + "\n" for x in ref), encoding="utf-8")
    out = tmp_path / "monitor"
    code, stdout, err = run_cli(capsys, monkeypatch, "monitor", "report", "--reference", str(refs), "--window", "200",
                                "--out", str(out), "--lang", "ja")
    assert code == 0, err
    html = (out / "monitor.html").read_text(encoding="utf-8")
    assert "ドリフト・品質モニター" in html and "日本語の質問" in html and "警告" in html
    assert "<script src=" not in html and "Plotly.newPlot" in html  # offline (plotly inline), with the chart
    data = json.loads((out / "monitor.json").read_text(encoding="utf-8"))
    assert len(data["windows"]) == 15 and data["windows"][-1]["alerts"] and not data["windows"][0]["alerts"]
    code, _, err = run_cli(capsys, monkeypatch, "monitor", "report", "--reference", str(refs), "--window", "100000", "--out", str(out))
    assert code == 2 and "fewer than one window" in err
