"""`kogata data prepare` end to end: a folder of mixed-language company documents with planted duplicates,
PII, a Shift_JIS file and a binary file; determinism; splits; errors that exit 2 with one line."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from kogata.core.errors import KogataError
from kogata.data import PrepareConfig, load_dataset, prepare
from tests.cli_helpers import run_cli

SUITES = resources.files("kogata") / "suites"
RAW_PII = ["ken.sato@example.com", "415 555 0100", "4111 1111 1111 1111", "03-1234-5678", "150-0001", "1234 5678 9018", "token=s3cr3t"]


def _paragraphs(lang: str) -> list[str]:
    text = (SUITES / f"support-desk-{lang}" / "docs_train.txt").read_text(encoding="utf-8")
    return [p for p in text.split("\n\n") if len(p) > 150]


@pytest.fixture()
def docs(tmp_path):
    """Company docs in ja and en, plus planted exact/near duplicates, PII, junk, cp932 and binary files."""
    root = tmp_path / "docs"
    (root / "ja").mkdir(parents=True)
    (root / "en").mkdir()
    ja, en = _paragraphs("ja"), _paragraphs("en")
    (root / "ja" / "manual.txt").write_text("\n\n".join(ja[:12]), encoding="utf-8")
    (root / "en" / "manual.md").write_text("\n\n".join(en[:12]), encoding="utf-8")
    near_en = en[3].replace(" the ", " our ", 1)
    assert near_en != en[3]
    near_ja = ja[3].replace("です", "でした", 1)
    assert near_ja != ja[3]
    (root / "en" / "copy.md").write_text(f"{en[5]}\n\n{near_en}", encoding="utf-8")  # exact + near duplicate
    (root / "ja" / "copy.txt").write_text(f"{ja[5]}\n\n{near_ja}", encoding="utf-8")
    memo_ja = "担当の佐藤です。お客様の連絡先は電話03-1234-5678、〒150-0001 東京都渋谷区。マイナンバーは1234 5678 9018と伺っています。"
    (root / "ja" / "memo_sjis.txt").write_bytes(memo_ja.encode("cp932"))
    memo_en = (
        "Please call Ken Sato at +1 415 555 0100 or write to ken.sato@example.com about the refund. "
        "His card 4111 1111 1111 1111 was charged twice. Reset link: https://shop.example.com/reset?token=s3cr3t"
    )
    (root / "en" / "memo.md").write_text(memo_en, encoding="utf-8")
    qa = [{"question": "保証期間は?", "answer": "お買い上げ日から1年間です。"}, {"question": "Warranty?", "answer": "One year from the date of purchase."}]
    (root / "faq.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in qa + qa[:1]) + "\n", encoding="utf-8")
    (root / "junk.txt").write_text("BUY NOW!!! BUY NOW!!! BUY NOW!!! BUY NOW!!! BUY NOW!!! BUY NOW!!!\n\nok", encoding="utf-8")
    (root / "scan.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    return root


def test_cli_end_to_end(docs, tmp_path, capsys, monkeypatch):
    out = tmp_path / "dataset"
    code, stdout, err = run_cli(capsys, monkeypatch, "data", "prepare", str(docs), "--out", str(out), "--split", "heldout=0.2", "--min-chars", "20")
    assert code == 0, err
    assert {p.name for p in out.iterdir()} == {"data.jsonl", "removed.jsonl", "manifest.json", "summary.html", "train.jsonl", "heldout.jsonl"}
    assert not list(tmp_path.glob(".dataset.*"))  # staging folder gone
    m = json.loads((out / "manifest.json").read_text())
    assert m["version"] == 1 and m["seed"] == 0 and len(m["fingerprint"]) == 64
    removed = m["removed"]
    assert removed["exact_duplicate"]["count"] == 3  # en[5], ja[5], the repeated FAQ line
    assert removed["near_duplicate"]["count"] == 2  # one-word edits in ja and en
    assert removed["too_short"]["count"] == 1 and removed["repetitive"]["count"] == 1
    assert removed["exact_duplicate"]["examples"][0]["id"]
    assert m["pii"] == {"EMAIL": 1, "PHONE": 2, "POSTAL_CODE": 1, "CREDIT_CARD": 1, "MY_NUMBER": 1, "URL": 1}
    assert [s.split("/")[-1] for s in m["files"]["binary_skipped"]] == ["scan.png"]
    assert set(m["langs"]) == {"ja", "en"} and m["kinds"] == {"text": m["records"] - 2, "qa": 2}
    rows = [json.loads(line) for line in (out / "data.jsonl").read_text().splitlines()]
    assert len(rows) == m["records"] == 24 + 2 + 2
    assert m["splits"] == {"train": 22, "heldout": 6}
    assert len(load_dataset(out, "train")) + len(load_dataset(out, "heldout")) == len(rows)
    memo = next(r for r in rows if r["source"].endswith("memo_sjis.txt"))
    assert memo["lang"] == "ja" and "担当の佐藤です" in memo["text"] and "[MY_NUMBER]" in memo["text"]
    qa = next(r for r in rows if "question" in r)
    assert set(qa) == {"id", "question", "answer", "source", "lang"}
    everything = "".join((out / f).read_text() for f in ("data.jsonl", "removed.jsonl", "manifest.json", "summary.html"))
    for raw in RAW_PII:
        assert raw not in everything
    html = (out / "summary.html").read_text()
    assert "<script" not in html and "href=" not in html and " src=" not in html and "near_duplicate" in html
    reasons = {json.loads(line)["reason"] for line in (out / "removed.jsonl").read_text().splitlines()}
    assert reasons == {"exact_duplicate", "near_duplicate", "too_short", "repetitive"}
    assert "near_dedup" in stdout and "fingerprint" in stdout


def test_same_seed_same_fingerprint_and_target_size(docs, tmp_path):
    cfg = dict(seed=7, target_size=10, split={"heldout": 0.1})
    a = prepare([docs], tmp_path / "a", PrepareConfig(**cfg))
    b = prepare([docs], tmp_path / "b", PrepareConfig(**cfg))
    assert a["fingerprint"] == b["fingerprint"] and a["records"] == 10
    assert (tmp_path / "a" / "heldout.jsonl").read_bytes() == (tmp_path / "b" / "heldout.jsonl").read_bytes()
    assert a["removed"]["not_selected"]["count"] == a["stages"][-1]["in"] - 10
    c = prepare([docs], tmp_path / "c", PrepareConfig(seed=7, split={"heldout": 0.1}))
    assert c["fingerprint"] != a["fingerprint"]


def test_curation_that_removes_everything_is_a_user_error(docs, tmp_path, capsys, monkeypatch):
    out = tmp_path / "ds"
    code, _, err = run_cli(capsys, monkeypatch, "data", "prepare", str(docs), "--out", str(out), "--lang", "ko")
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), err
    assert "language" in lines[0] and "--lang" in lines[0] and "ja" in lines[0]
    assert not out.exists() and not list(tmp_path.glob(".ds.*"))
    with pytest.raises(KogataError, match="too_short .* lower --min-chars"):
        prepare([docs], out, PrepareConfig(min_chars=50000, max_chars=60000))


def test_out_exists_overwrite_and_bad_flags(docs, tmp_path, capsys, monkeypatch):
    out = tmp_path / "ds"
    assert run_cli(capsys, monkeypatch, "data", "prepare", str(docs / "en"), "--out", str(out))[0] == 0
    code, _, err = run_cli(capsys, monkeypatch, "data", "prepare", str(docs / "en"), "--out", str(out))
    assert code == 2 and "already exists" in err
    code, _, err = run_cli(capsys, monkeypatch, "data", "prepare", str(docs / "en"), "--out", str(out), "--overwrite", "--no-pii")
    assert code == 0, err
    assert "ken.sato@example.com" in (out / "data.jsonl").read_text()
    code, _, err = run_cli(capsys, monkeypatch, "data", "prepare", str(docs), "--out", str(tmp_path / "x"), "--format", "qa")
    assert code == 2 and "--format qa" in err
    code, _, err = run_cli(capsys, monkeypatch, "data", "prepare", str(docs), "--out", str(tmp_path / "x"), "--split", "heldout")
    assert code == 2 and "heldout=0.1" in err
