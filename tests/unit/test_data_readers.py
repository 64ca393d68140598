"""Reading inputs: formats, encodings, binary files, QA fields, and the errors that name file and line."""

from __future__ import annotations

import json

import pytest

from kogata.core.errors import KogataError
from kogata.data.normalize import normalize_text
from kogata.data.readers import read_inputs, split_paragraphs

JA = "さくら電機の冷蔵庫SK-R450は、5ドア450Lの大容量モデルです。"


def test_normalize_nfkc_but_not_code_or_urls():
    text = "ｶﾀｶﾅとＡＢＣ１２３\u3000全角スペース\u200b\n```\nx = \"ＡＢＣ\"\n```\n`ｶﾅ` https://例.example.com/ﾊﾟｽ?q=ＡＢＣ\r\n\n\n\n末尾   "
    out = normalize_text(text)
    assert out.startswith("カタカナとABC123 全角スペース\n")
    assert 'x = "ＡＢＣ"' in out and "`ｶﾅ`" in out  # code untouched
    assert "\n\n末尾" in out and "\n\n\n" not in out and not out.endswith(" ")


def test_split_paragraphs_joins_headings_and_keeps_code():
    text = "【保証規定】\n\n保証期間は1年間です。詳しくは取扱説明書をご覧ください。\n\n```\na\n\nb\n```\n\n最後の段落はこちらです。十分な長さがあります。"
    paras = split_paragraphs(text)
    assert paras[0].startswith("【保証規定】\n保証期間")
    assert paras[1] == "```\na\n\nb\n```"
    assert len(paras) == 3


def test_cp932_and_euc_jp_files_are_read(tmp_path):
    (tmp_path / "sjis.txt").write_bytes(JA.encode("cp932"))
    (tmp_path / "euc.md").write_bytes(JA.encode("euc_jp"))
    (tmp_path / "bom.txt").write_bytes(JA.encode("utf-8-sig"))
    res = read_inputs([tmp_path])
    assert [r.text for r in res.records] == [JA, JA, JA]
    assert {f["source"].split("/")[-1]: f["encoding"] for f in res.files} == {"bom.txt": "utf-8-sig", "euc.md": "euc_jp", "sjis.txt": "cp932"}


def test_undecodable_file_is_named(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\x80\x80\xfd\xfe\xff" * 20)
    with pytest.raises(KogataError, match="bad.txt is not in a text encoding"):
        read_inputs([bad])


def test_binary_files_skipped_and_all_binary_is_an_error(tmp_path):
    (tmp_path / "manual.pdf").write_bytes(b"%PDF-1.7\n\x00\x01binary")
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(KogataError, match="every input file is binary"):
        read_inputs([tmp_path])
    (tmp_path / "notes.txt").write_text(JA, encoding="utf-8")
    res = read_inputs([tmp_path])
    assert len(res.records) == 1 and sorted(s.split("/")[-1] for s in res.binary) == ["logo.png", "manual.pdf"]


def test_jsonl_qa_text_and_csv(tmp_path):
    rows = [
        {"instruction": "要約して", "input": "長い文", "output": "短い文", "id": "a1"},
        {"question": "保証は?", "answer": "1年", "context": "保証期間は1年です。"},
        {"prompt": "Hi", "response": "Hello"},
        {"text": "A plain text record.", "meta": {"page": 3}},
        {"ticket": "Fridge broken", "summary": "broken fridge"},
    ]
    (tmp_path / "mixed.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n", encoding="utf-8")
    (tmp_path / "faq.csv").write_text("question,answer\n送料は?,無料です\n", encoding="utf-8")
    res = read_inputs([tmp_path])
    by_id = {r.id.split("/")[-1]: r for r in res.records}
    assert by_id["faq.csv:2"].kind == "qa" and by_id["faq.csv:2"].text == "送料は?\n無料です"
    qa = by_id["mixed.jsonl:1"]
    assert qa.kind == "qa" and qa.content_keys == ("instruction", "input", "output") and qa.fields["orig_id"] == "a1"
    assert by_id["mixed.jsonl:2"].text == "保証期間は1年です。\n保証は?\n1年"
    assert by_id["mixed.jsonl:3"].kind == "qa"
    assert by_id["mixed.jsonl:4"].fields == {"text": "A plain text record.", "meta": {"page": 3}}
    assert by_id["mixed.jsonl:5"].text == "Fridge broken\nbroken fridge"
    as_text = read_inputs([tmp_path / "mixed.jsonl"], fmt="text").records
    assert all(r.kind == "text" for r in as_text) and as_text[0].text == "要約して\n長い文\n短い文"


def test_bad_jsonl_names_file_and_line(tmp_path):
    f = tmp_path / "data.jsonl"
    f.write_text('{"question": "q", "answer": "a"}\n{"question": "q2", "answer": \n', encoding="utf-8")
    with pytest.raises(KogataError, match=r"data.jsonl:2 is not valid JSON"):
        read_inputs([f])
    f.write_text('{"question": "q", "answer": "a"}\n{"text": "no answer here"}\n', encoding="utf-8")
    with pytest.raises(KogataError, match=r"data.jsonl:2 has no instruction/answer fields \(found: text\)"):
        read_inputs([f], fmt="qa")
    assert len(read_inputs([f]).records) == 2  # auto: the second line is a text record


def test_missing_input(tmp_path):
    with pytest.raises(KogataError, match="does not exist"):
        read_inputs([tmp_path / "nope"])
