"""The centred dense space (kogata.search.space): a "hub" chunk near every query stops winning once both sides
are mean-centred; an index version stores centred vectors plus its two means and searches with them; an index
written before spaces (raw vectors) still opens and uses the raw bar; clearing the vector cache never feeds
centred vectors back into it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from kogata.search.backend import EmbeddedBackend
from kogata.search.chunk import Chunk
from kogata.search.index import SearchIndex, build_index, update_index
from kogata.search.retrieve import Retriever
from kogata.search.space import MIN_SIMILARITY, RAW_MIN_SIMILARITY, SPACE_FILE, DenseSpace, calibration_questions, query_mean
from kogata.search.vectors import VectorCache
from tests.fixtures.search_corpus import store_with_e5, write_docs


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_centring_stops_a_hub_chunk_from_winning_every_query():
    dim, n = 8, 5
    common = np.zeros(dim, dtype=np.float32)
    common[0] = 1.0
    basis = np.eye(dim, dtype=np.float32)[1 : n + 1]
    chunks_v = _unit(3 * common + basis)  # chunk i: the shared direction plus its own topic
    hub = _unit(4 * common + 0.1 * basis.sum(0))  # almost only the shared direction: near everything
    vectors = np.vstack([chunks_v, hub]).astype(np.float32)
    queries = _unit(3 * common + 0.2 * basis).astype(np.float32)  # query i: weakly about topic i
    chunks = [Chunk(f"d{i}#0", f"d{i}", f"d{i}.md", "", 0, 0, 1, f"text {i}") for i in range(n + 1)]

    class Fixed:  # the query vectors are given directly
        dim = 8

    raw = EmbeddedBackend(dim)
    raw.upsert(chunks, [["t"]] * (n + 1), vectors)
    plain = Retriever(raw, "bigram", Fixed())
    assert all(plain.search("q", 1, "dense", query_vector=q)[0].chunk.doc_id == f"d{n}" for q in queries)  # the hub wins

    space = DenseSpace(vectors.mean(axis=0), queries.mean(axis=0))
    centred = EmbeddedBackend(dim)
    centred.upsert(chunks, [["t"]] * (n + 1), space.passages(vectors))
    assert np.allclose(np.linalg.norm(centred.vectors, axis=1), 1, atol=1e-5)
    r = Retriever(centred, "bigram", Fixed(), space=space)
    assert [r.search("q", 1, "dense", query_vector=q)[0].chunk.doc_id for q in queries] == [f"d{i}" for i in range(n)]
    assert r.min_similarity == MIN_SIMILARITY and plain.min_similarity == RAW_MIN_SIMILARITY


def test_space_round_trips_through_its_file(tmp_path):
    rng = np.random.default_rng(1)
    space = DenseSpace(rng.standard_normal(4).astype(np.float32), rng.standard_normal(4).astype(np.float32))
    space.save(tmp_path)
    back = DenseSpace.load(tmp_path)
    assert np.array_equal(back.passage_mean, space.passage_mean) and np.array_equal(back.query_mean, space.query_mean)
    q = rng.standard_normal(4).astype(np.float32)
    assert np.allclose(back.query(q), _unit(q - space.query_mean))


def test_calibration_questions_are_the_packaged_support_desk_questions():
    qs = calibration_questions()
    assert len(qs) == 240 and len(set(qs)) > 200
    assert any("\u3040" <= ch <= "\u30ff" for ch in qs[0]) and qs[-1].isascii()  # ja first, en last


@pytest.fixture()
def store(tmp_path):
    return store_with_e5(tmp_path / "home")


def test_index_stores_centred_vectors_and_its_means(store, tmp_path):
    docs = write_docs(tmp_path / "docs")
    art = build_index(store, [docs], "kb").artifact
    meta = json.loads((art.path / "index.json").read_text(encoding="utf-8"))
    assert meta["dense_space"]["centred"] is True and (art.path / SPACE_FILE).is_file()
    index = SearchIndex.open(store, "kb")
    try:
        space = index.space
        assert space is not None
        cache = VectorCache.for_embedder(store.home, meta["embedder"]["id"])
        try:
            raw = cache.get_many([c.hash for c in index.backend.chunks])
            raw = np.stack([raw[c.hash] for c in index.backend.chunks])
            assert np.allclose(space.passage_mean, raw.mean(axis=0), atol=1e-6)
            assert np.allclose(index.backend.vectors, space.passages(raw), atol=1e-6)  # stored = centred raw vectors
            assert np.allclose(space.query_mean, query_mean(index.embedder(), cache), atol=1e-6)
        finally:
            cache.close()
        r = index.retriever()
        assert r.min_similarity == MIN_SIMILARITY
        assert r.search("未使用品はいつまで返品できる？", 1)[0].chunk.source == "policies/returns.md"
        assert r.search("How many days a week can I work from home?", 1)[0].chunk.source == "en/remote-work.md"
    finally:
        index.close()


def test_index_from_before_spaces_still_searches_raw(store, tmp_path):
    docs = write_docs(tmp_path / "docs")
    art = build_index(store, [docs], "old").artifact
    index = SearchIndex.open(store, "old")
    raw = index.embedder().embed([c.embed_text for c in index.backend.chunks])
    index.close()
    # rewrite the version as an index written before dense spaces: raw vectors, no dense_space
    meta = json.loads((art.path / "index.json").read_text(encoding="utf-8"))
    meta.pop("dense_space")
    (art.path / "index.json").write_text(json.dumps(meta), encoding="utf-8")
    (art.path / SPACE_FILE).unlink()
    np.save(art.path / "vectors.npy", np.asarray(raw, dtype="<f4"), allow_pickle=False)
    index = SearchIndex.open(store, "old")
    try:
        assert index.space is None
        r = index.retriever()
        assert r.min_similarity == RAW_MIN_SIMILARITY
        hit = r.search("未使用品はいつまで返品できる？", 1)[0]
        assert hit.chunk.source == "policies/returns.md" and hit.similarity > RAW_MIN_SIMILARITY
    finally:
        index.close()
    # the next update rewrites it centred, though no document changed (the vectors come from the cache)
    rep = update_index(store, "old")
    assert not rep.up_to_date and rep.version == 2 and rep.embedded == 0
    index = SearchIndex.open(store, "old")
    try:
        assert index.space is not None and index.retriever().min_similarity == MIN_SIMILARITY
    finally:
        index.close()
    assert update_index(store, "old").up_to_date  # and then it is up to date


def test_update_after_the_cache_is_cleared_re_embeds_instead_of_reusing_centred_vectors(store, tmp_path):
    cache = store.home / "cache" / "search-vectors"
    cache.unlink()  # this store gets a cache of its own (not the one the test process shares)
    cache.mkdir()
    docs = write_docs(tmp_path / "docs")
    first = build_index(store, [docs], "kb")
    v1 = np.load(first.artifact.path / "vectors.npy", allow_pickle=False)
    shutil.rmtree(cache)
    (docs / "policies" / "travel.md").write_text("# 出張旅費規程\n\n国内出張の日当は1日あたり2,500円です。\n", encoding="utf-8")
    second = update_index(store, "kb")
    assert second.embedded == second.chunks  # nothing cached any more: every chunk embedded again, none reused centred
    # the same documents again from an empty cache: identical vectors to a fresh build of those documents
    (docs / "policies" / "travel.md").write_text(
        "# 出張旅費規程\n\n国内出張の日当は1日あたり2,000円です。宿泊費の上限は1泊10,000円です。\n", encoding="utf-8"
    )
    third = update_index(store, "kb")
    v3 = np.load(third.artifact.path / "vectors.npy", allow_pickle=False)
    assert np.allclose(v1, v3, atol=1e-5)
