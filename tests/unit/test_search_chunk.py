"""The chunker on Japanese and English text: sentence boundaries (。！？ and ". "), line structure, size and overlap
in characters, headings starting chunks, table headers repeated, stable content hashes; and ingest (NFKC, HTML,
PDF, records, PII)."""

from __future__ import annotations

import pytest

from kogata.core.errors import KogataError
from kogata.search.chunk import ChunkerSettings, chunk_document, split_units
from kogata.search.ingest import Document, html_to_text, read_documents
from tests.fixtures.search_corpus import encrypted_pdf, text_pdf

JA = ("未使用の商品は到着後30日以内であれば返品できます。開封済みの商品は返品できません！"
      "ご不明な点はありますか？「はい。」とお答えください。\n初期不良の場合、返送料は当社が負担します。")  # fmt: skip


def _doc(text: str, title: str = "t") -> Document:
    return Document("d.md", "d.md", title, text)


def test_units_end_after_japanese_sentence_marks_and_closing_brackets():
    units = [JA[a:b] for a, b in split_units(JA)]
    assert units[0] == "未使用の商品は到着後30日以内であれば返品できます。"
    assert units[1] == "開封済みの商品は返品できません！"
    assert units[2] == "ご不明な点はありますか？"
    assert units[3] == "「はい。」とお答えください。\n"  # a quotation inside a sentence does not end it
    assert "".join(units) == JA  # units cover the text exactly


def test_english_sentences_split_at_period_space_but_not_inside_numbers():
    text = "Version 2.5 ships today. It costs 3.50 dollars! Really? Yes"
    assert [text[a:b] for a, b in split_units(text)] == ["Version 2.5 ships today. ", "It costs 3.50 dollars! ", "Really? ", "Yes"]


def test_chunks_respect_size_and_share_whole_sentences_as_overlap():
    text = "".join(f"これは{i}番目の文で、少し長めに書いてあります。" for i in range(20))
    chunks = chunk_document(_doc(text, ""), ChunkerSettings(size=100, overlap=40))
    assert len(chunks) > 3
    for c in chunks:
        assert len(c.text) <= 100 and c.text.endswith("。")  # whole sentences only
        assert text[c.start : c.end].strip() == c.text
    for a, b in zip(chunks, chunks[1:]):
        assert b.start < a.end and a.end - b.start <= 40  # overlap: a shared tail of at most 40 characters
        assert text[b.start : a.end].endswith("。")
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert all(c.chunk_id == f"d.md#{c.position}" for c in chunks)


def test_no_overlap_setting_gives_disjoint_chunks_and_long_units_are_cut():
    text = "あ" * 250 + "。"
    chunks = chunk_document(_doc(text, ""), ChunkerSettings(size=100, overlap=0))
    assert [len(c.text) for c in chunks] == [100, 100, 51]
    assert all(b.start == a.end for a, b in zip(chunks, chunks[1:]))


def test_headings_start_new_chunks_and_tables_repeat_their_header():
    rows = "\n".join(f"| SK-{i} | {i * 100}円 |" for i in range(1, 12))
    text = f"# 返品\n\n返品は30日以内に受け付けます。詳しくは窓口へ。\n\n## 価格表\n\n| 品番 | 価格 |\n|---|---|\n{rows}\n"
    chunks = chunk_document(_doc(text, "返品"), ChunkerSettings(size=90, overlap=0))
    assert any(c.text.startswith("## 価格表") for c in chunks)
    table_chunks = [c for c in chunks if "| SK-" in c.text]
    assert len(table_chunks) >= 2
    for c in table_chunks:
        assert c.text.startswith(("## 価格表", "| 品番 | 価格 |\n|---|---|")), c.text
    assert sum(c.text.count("| SK-") for c in table_chunks) == 11  # every row exactly once


def test_hash_depends_on_content_only_and_title_is_embedded():
    a = chunk_document(_doc(JA, "返品ポリシー"), ChunkerSettings())
    b = chunk_document(Document("other.md", "other.md", "返品ポリシー", JA), ChunkerSettings())
    assert [c.hash for c in a] == [c.hash for c in b]  # same text and title, another file: same vectors
    assert a[0].embed_text.startswith("返品ポリシー\n")
    c = chunk_document(_doc(JA + "追記。", "返品ポリシー"), ChunkerSettings())
    assert c[-1].hash != a[-1].hash


def test_bad_chunker_settings_are_one_line_errors():
    with pytest.raises(KogataError, match="chunk-size"):
        ChunkerSettings(size=10)
    with pytest.raises(KogataError, match="overlap"):
        ChunkerSettings(size=100, overlap=60)


def test_ingest_normalises_reads_records_html_pdf_and_scrubs(tmp_path):
    (tmp_path / "a.md").write_text("# ＡＰ－２１０の説明\n\n全角の１２３と半角ｶﾀｶﾅ。連絡先は taro@example.com です。\n", encoding="utf-8")
    (tmp_path / "faq.jsonl").write_text('{"question": "支払日は？", "answer": "毎月25日です。"}\n{"title": "Wi-Fi", "text": "See the portal."}\n',
                                        encoding="utf-8")  # fmt: skip
    (tmp_path / "n.html").write_text("<html><head><title>お知らせ</title><script>var x=1;</script></head><body><h1>移転</h1>"
                                     "<p>本社は8階に移ります。</p></body></html>", encoding="utf-8")  # fmt: skip
    (tmp_path / "p.pdf").write_bytes(text_pdf("Returns are accepted within 30 days"))
    res = read_documents([tmp_path], scrub_pii=True)
    docs = {d.doc_id: d for d in res.documents}
    assert set(docs) == {"a.md", "faq.jsonl:1", "faq.jsonl:2", "n.html", "p.pdf"}
    assert docs["a.md"].title == "AP-210の説明" and "123と半角カタカナ" in docs["a.md"].text  # NFKC
    assert "[EMAIL]" in docs["a.md"].text and res.pii == {"EMAIL": 1}
    assert docs["faq.jsonl:1"].title == "支払日は?" and "毎月25日" in docs["faq.jsonl:1"].text
    assert docs["faq.jsonl:2"].title == "Wi-Fi"
    assert docs["n.html"].title == "お知らせ" and "本社は8階" in docs["n.html"].text and "var x" not in docs["n.html"].text
    assert "within 30 days" in docs["p.pdf"].text
    assert res.fingerprint() == read_documents([tmp_path], scrub_pii=True).fingerprint()


def test_html_text_keeps_block_structure():
    text, title = html_to_text("<h1>T</h1><ul><li>one</li><li>two</li></ul><table><tr><td>a</td><td>b</td></tr></table>")
    assert title == "T" and "one\n" in text and "two" in text and "a | b" in text


def test_unreadable_inputs_name_the_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(KogataError, match="no documents found"):
        read_documents([tmp_path / "empty"])
    bad = tmp_path / "bad"
    bad.mkdir()
    encrypted_pdf(bad / "secret.pdf")
    with pytest.raises(KogataError, match=r"secret\.pdf is an encrypted PDF"):
        read_documents([bad])
    (bad / "secret.pdf").write_bytes(b"%PDF-1.4\n\x00\x01garbage")
    with pytest.raises(KogataError, match=r"secret\.pdf is not a readable PDF"):
        read_documents([bad])
    (bad / "secret.pdf").unlink()
    (bad / "latin.txt").write_bytes(b"\x80\x81\xfe\xff broken \xc3\x28" * 20)
    with pytest.raises(KogataError, match=r"latin\.txt is not in a text encoding"):
        read_documents([bad])
    (bad / "ok.md").write_text("# ok\n\nfine text", encoding="utf-8")
    res = read_documents([bad], skip_unreadable=True)
    assert [d.doc_id for d in res.documents] == ["ok.md"] and res.skipped[0][0] == "latin.txt"
    with pytest.raises(KogataError, match="above the 0.0001 MB limit"):
        read_documents([bad], max_file_mb=0.0001, skip_unreadable=True)
