"""Index artifacts with the real multilingual-e5-small embedder: build, incremental update by content hash
(only new/changed chunks embedded, removed documents dropped), versions with lineage, a failed build leaving the
previous version usable, embedder checks, and hybrid ranking on a small Japanese/English corpus."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from kogata.core.errors import KogataError
from kogata.search.backend import EmbeddedBackend
from kogata.search.chunk import Chunk
from kogata.search.index import SearchIndex, build_index, index_artifacts, list_indexes, update_index
from kogata.search.retrieve import Retriever
from tests.fixtures.search_corpus import DOCS, encrypted_pdf, store_with_e5, write_docs


@pytest.fixture()
def store(tmp_path):
    return store_with_e5(tmp_path / "home")


def test_build_update_incrementally_and_keep_lineage(store, tmp_path):
    docs = write_docs(tmp_path / "docs")
    first = build_index(store, [docs], "handbook")
    assert first.version == 1 and first.documents == len(DOCS) + 1  # the JSONL file holds two documents
    art = first.artifact
    assert art.format == "search-index" and art.kind == "search-index" and art.name == "index-handbook-v1"
    assert art.verify() == []
    meta = json.loads((art.path / "index.json").read_text(encoding="utf-8"))
    assert meta["embedder"]["name"] == "multilingual-e5-small" and meta["embedder"]["dim"] == 384
    assert meta["chunker"] == {"size": 400, "overlap": 80} and meta["tokenizer"] == "sudachi"
    step = art.lineage[-1]
    assert step["method"] == "index-build" and step["data_fingerprint"] == meta["docs_fingerprint"]
    assert step["config"]["embedder"]["id"] == store.get("multilingual-e5-small").id
    vectors = np.load(art.path / "vectors.npy", allow_pickle=False)
    assert vectors.shape == (first.chunks, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)

    # unchanged documents: nothing to do, no new version
    again = update_index(store, "handbook")
    assert again.up_to_date and again.version == 1 and again.embedded == 0

    # change one document, add one, remove one: only the changed/new chunks are embedded
    (docs / "policies" / "travel.md").write_text("# 出張旅費規程\n\n国内出張の日当は1日あたり2,500円です。\n", encoding="utf-8")
    (docs / "manuals" / "new.md").write_text("# DH-120 除湿機\n\nタンク容量は2.5Lです。満水になるとE3が表示されます。\n", encoding="utf-8")
    (docs / "en" / "remote-work.md").unlink()
    second = update_index(store, "handbook")
    assert second.version == 2 and second.artifact.parent == art.id
    assert second.added == ["manuals/new.md"] and second.changed == ["policies/travel.md"] and second.removed == ["en/remote-work.md"]
    assert second.embedded == 2  # one chunk each for the new and the changed document
    assert second.artifact.lineage[-1]["method"] == "index-update" and len(second.artifact.lineage) == 2
    index = SearchIndex.open(store, "handbook")
    assert {c.doc_id for c in index.backend.chunks} == {d.doc_id for d in _expected_docs(docs)}
    assert not any("Remote" in c.text for c in index.backend.chunks)
    assert [r["name"] for r in list_indexes(store)] == ["handbook"] and list_indexes(store)[0]["version"] == 2
    index.close()


def _expected_docs(folder):
    from kogata.search.ingest import read_documents

    return read_documents([folder]).documents


def test_failed_build_keeps_the_previous_version(store, tmp_path):
    docs = write_docs(tmp_path / "docs")
    build_index(store, [docs], "kb")
    encrypted_pdf(docs / "locked.pdf")
    with pytest.raises(KogataError, match=r"locked\.pdf is an encrypted PDF"):
        update_index(store, "kb")
    versions = index_artifacts(store, "kb")
    assert [a.manifest["index"]["version"] for a in versions] == [1]
    assert SearchIndex.open(store, "kb").retriever().search("返品できる期間", 1)[0].chunk.source == "policies/returns.md"
    assert not any(store.tmp_dir.glob("stage-*"))  # the staging folder is gone


def test_embedder_mismatch_and_bm25_only_indexes(store, tmp_path):
    docs = write_docs(tmp_path / "docs")
    rep = build_index(store, [docs], "lex", embedder="none")
    assert rep.embedded == 0 and not (rep.artifact.path / "vectors.npy").exists()
    with pytest.raises(KogataError, match="built with no embedder"):
        SearchIndex.open(store, "lex", embedder="multilingual-e5-small")
    idx = SearchIndex.open(store, "lex")
    assert idx.retriever(need_dense=False).search("AP-210", 1, "bm25")[0].chunk.source == "manuals/ap-210.md"
    with pytest.raises(KogataError, match="needs an embedder"):
        idx.retriever().search("AP-210", 1, "dense")
    build_index(store, [docs], "dense")
    with pytest.raises(KogataError, match="was built with embedder multilingual-e5-small"):
        SearchIndex.open(store, "dense", embedder="minilm-l6")
    with pytest.raises(KogataError, match="was built with embedder multilingual-e5-small"):
        update_index(store, "dense", embedder="none")
    with pytest.raises(KogataError, match="no search index named 'missing'"):
        SearchIndex.open(store, "missing")
    with pytest.raises(KogataError, match="not valid"):
        build_index(store, [docs], "bad name!")


def test_hybrid_finds_paraphrases_and_product_codes(store, tmp_path):
    docs = write_docs(tmp_path / "docs")
    build_index(store, [docs], "mix")
    r = SearchIndex.open(store, "mix").retriever()
    # a paraphrase sharing few words with its passage: found by the embedder, hybrid keeps it first
    q = "買った物を送り返せるのは何日まで？"
    assert r.search(q, 1, "dense")[0].chunk.source == "policies/returns.md"
    assert r.search(q, 1, "hybrid")[0].chunk.source == "policies/returns.md"
    # an exact product code: BM25 finds it, hybrid too
    assert r.search("AP-210 定格消費電力", 1, "bm25")[0].chunk.source == "manuals/ap-210.md"
    assert r.search("AP-210 定格消費電力", 1, "hybrid")[0].chunk.source == "manuals/ap-210.md"
    # English question, Japanese and English documents side by side
    assert r.search("How many days a week can I work from home?", 1)[0].chunk.source == "en/remote-work.md"
    hits = r.search("返品", 5, "bm25")
    assert all(h.bm25 > 0 for h in hits)  # zero-score BM25 hits are never returned
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))


def test_fusion_is_the_documented_weighted_sum():
    """Score fusion by hand on a backend with 2-d vectors: w·bm25/max + (1−w)·minmax(cos)."""
    chunks = [Chunk(f"d{i}#0", f"d{i}", f"d{i}", "", 0, 0, 1, t) for i, t in enumerate(["apple pie", "banana split", "cherry tart"])]
    vecs = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]], dtype=np.float32)
    backend = EmbeddedBackend(2)
    backend.upsert(chunks, [["apple", "pie"], ["banana", "split"], ["cherry", "tart"]], vecs)

    class Fixed:  # the query vector is given directly
        dim = 2

    r = Retriever(backend, "bigram", Fixed(), keyword_weight=0.3)
    q = np.array([0.0, 1.0], dtype=np.float32)  # cos: 0, 0.6, 1.0
    hits = r.search("banana", 3, "hybrid", query_vector=q)
    bm = backend.lexical(["banana"], 3)
    assert [row for row, _ in bm] == [1]  # only one lexical hit (the zero scores are dropped)
    expected = {0: 0.7 * 0.0, 1: 0.3 * 1.0 + 0.7 * 0.6, 2: 0.7 * 1.0}
    assert [h.chunk.chunk_id for h in hits] == ["d1#0", "d2#0", "d0#0"]
    for h in hits:
        assert h.score == pytest.approx(expected[int(h.chunk.doc_id[1])], abs=1e-6)
    assert [h.chunk.chunk_id for h in r.search("banana", 3, "dense", query_vector=q)] == ["d2#0", "d1#0", "d0#0"]
    backend.delete(["d1#0"])
    assert len(backend) == 2 and backend.lexical(["banana"], 3) == []
    folder_hits = r.search("cherry", 1, "bm25")
    assert folder_hits[0].chunk.chunk_id == "d2#0"


def test_backend_round_trip_is_byte_stable(tmp_path):
    chunks = [Chunk("a#0", "a", "a", "T", 0, 0, 3, "返品の期限")]
    b = EmbeddedBackend(2)
    b.upsert(chunks, [["返品", "期限"]], np.array([[0.6, 0.8]], dtype=np.float32))
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    b.save(tmp_path / "x")
    b.save(tmp_path / "y")
    for name in ("chunks.sqlite", "vectors.npy"):
        assert (tmp_path / "x" / name).read_bytes() == (tmp_path / "y" / name).read_bytes()
    back = EmbeddedBackend.load(tmp_path / "x", 2)
    assert back.chunks[0] == chunks[0] and back.tokens == [["返品", "期限"]] and np.allclose(back.vectors, [[0.6, 0.8]])
    shutil.rmtree(tmp_path / "y")
