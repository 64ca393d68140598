"""The search backend contract, one set of checks for every backend: the embedded one (bm25s + numpy) and the
PostgreSQL + pgvector one on a real server (tests/unit/_pg.py). Each is held to a plain-Python reference of the
contract (BM25 as configured in backend.py, exact inner product, rows 0…n−1 in insertion order, a delete closing
the gap), so both give the same rows and scores (within 1e-5); then a Retriever over the company-docs sample
ranks identically on both, and an index built with ``backend=postgresql://…`` behaves like an embedded one in the
library, the CLI and ``POST /v1/search``. Also: bad URLs and servers (one-line errors, passwords masked), a server
without pgvector (Debian's own PostgreSQL), a dropped connection reopened, the optional HNSW index."""

from __future__ import annotations

import json
import math
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from kogata.core.errors import KogataError
from kogata.search.backend import BM25_B, BM25_K1, EmbeddedBackend
from kogata.search.chunk import Chunk
from tests.unit._pg import ServerUnavailable, start_server

BACKENDS = ["embedded", "postgresql"]
DIM = 8
COMPANY_DOCS = Path(__file__).resolve().parents[2] / "examples" / "company-docs"


@pytest.fixture(scope="module")
def pg_server():
    pytest.importorskip("pgvector")
    try:
        with start_server() as server:
            yield server
    except ServerUnavailable as exc:
        pytest.skip(f"no PostgreSQL server with pgvector could start here: {exc}")


@pytest.fixture(scope="module")
def pg_url(pg_server):
    return pg_server.new_database()


@pytest.fixture()
def make_backend(request):
    opened = []

    def make(kind: str, dim: int = DIM):
        if kind == "embedded":
            return EmbeddedBackend(dim)
        from kogata.search.backend_pg import PostgresBackend, table_for

        backend = PostgresBackend(request.getfixturevalue("pg_url"), table_for("contract", 1), dim, create=True)
        opened.append(backend)
        return backend

    yield make
    for b in opened:
        b.drop()
        b.close()


# ---- the reference: the contract in plain Python -------------------------------------------------------
class Reference:
    def __init__(self, dim: int):
        self.dim, self.items = dim, []  # [(chunk, tokens, vector)] in row order

    def upsert(self, chunks, tokens, vectors):
        self.delete(c.chunk_id for c in chunks)
        for i, c in enumerate(chunks):
            self.items.append((c, list(tokens[i]), None if vectors is None else np.asarray(vectors[i], dtype=np.float64)))

    def delete(self, ids):
        drop = set(ids)
        self.items = [it for it in self.items if it[0].chunk_id not in drop]

    def lexical(self, query, k):
        n = len(self.items)
        if not n or not query:
            return []
        dls = [max(len(t), 1) for _, t, _ in self.items]
        avgdl = sum(dls) / n
        df = Counter(term for _, t, _ in self.items for term in set(t))
        scores = []
        for row, ((_, toks, _), dl) in enumerate(zip(self.items, dls)):
            tf = Counter(toks)
            s = sum(math.log(1 + (n - df[q] + 0.5) / (df[q] + 0.5)) * tf[q] / (tf[q] + BM25_K1 * (1 - BM25_B + BM25_B * dl / avgdl))
                    for q in query if tf[q])  # fmt: skip
            if s > 0:
                scores.append((row, s))
        return sorted(scores, key=lambda t: (-t[1], t[0]))[:k]

    def dense(self, q, k):
        scores = [(row, float(v @ np.asarray(q, dtype=np.float64))) for row, (_, _, v) in enumerate(self.items)]
        return sorted(scores, key=lambda t: (-t[1], t[0]))[:k]


def assert_same_ranking(got, want, tol=1e-5):
    """Same rows in the same order and scores within ``tol``; rows may swap only inside a tie (|Δscore| < tol)."""
    assert len(got) == len(want), (got, want)
    for (row, score), (want_row, want_score) in zip(got, want):
        assert abs(score - want_score) < tol, (got, want)
        if row != want_row:
            tied = {r for r, s in want if abs(s - want_score) < tol}
            assert row in tied, (got, want)


def corpus(seed: int, n: int, prefix: str = "d"):
    rng = np.random.default_rng(seed)
    vocab = [f"語{i}" for i in range(30)] + ["sk-2041", "filter", "warranty"]
    zipf = 1 / np.arange(1, len(vocab) + 1)
    chunks, tokens = [], []
    for i in range(n):
        size = int(rng.integers(0, 25)) if i % 9 else 0  # some chunks have no tokens at all
        toks = list(rng.choice(vocab, size=size, p=zipf / zipf.sum()))
        chunks.append(Chunk(f"{prefix}{i // 3}#{i % 3}", f"{prefix}{i // 3}", f"docs/{prefix}{i // 3}.md", f"タイトル {i}", i % 3,
                            10 * i, 10 * i + 9, f"本文 {i} " + " ".join(toks)))  # fmt: skip
        tokens.append(toks)
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    if n > 5:
        vectors[5] = vectors[4]  # an exact tie: broken by row on every backend
    return chunks, tokens, vectors


QUERIES = [["語1"], ["語2", "語2", "filter"], ["語29", "sk-2041", "unknown"], ["nothing-here"], [], ["語0", "語3", "語5", "語8", "warranty"]]


def check_against(backend, ref, rng, ks=(1, 5, 200)):
    assert len(backend) == len(ref.items)
    for q in QUERIES:
        for k in ks:
            assert_same_ranking(backend.lexical(q, k), ref.lexical(q, k))
    if ref.dim:
        for qv in [*rng.normal(size=(4, DIM)).astype(np.float32), ref.items[4][2].astype(np.float32)]:
            for k in ks:
                assert_same_ranking(backend.dense(qv, k), ref.dense(qv, k))
    for row, (chunk, _, _) in enumerate(ref.items):
        assert backend.chunk(row) == chunk
    exported = list(backend.rows())
    assert [c for c, _, _ in exported] == [c for c, _, _ in ref.items]
    assert [t for _, t, _ in exported] == [t for _, t, _ in ref.items]
    if ref.dim:
        assert np.array_equal(np.stack([v for _, _, v in exported]), np.stack([v for _, _, v in ref.items]).astype(np.float32))


# ---- the contract, per backend ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", BACKENDS)
def test_upsert_query_delete_reupsert_match_the_reference(kind, make_backend):
    rng = np.random.default_rng(7)
    backend, ref = make_backend(kind), Reference(DIM)
    assert len(backend) == 0 and backend.lexical(["語1"], 5) == [] and backend.dense(np.ones(DIM, np.float32), 5) == []
    chunks, tokens, vectors = corpus(1, 60)
    for b in (backend, ref):
        b.upsert(chunks[:40], tokens[:40], vectors[:40])
        b.upsert(chunks[40:], tokens[40:], vectors[40:])
    check_against(backend, ref, rng)
    everything = [row for row, _ in backend.dense(vectors[4], 100)]
    assert everything.index(5) == everything.index(4) + 1  # rows 4 and 5 hold the same vector: the tie breaks by row

    gone = [chunks[i].chunk_id for i in (0, 7, 8, 33, 59)] + ["no-such-chunk"]
    for b in (backend, ref):
        b.delete(gone)
    check_against(backend, ref, rng)  # rows after each deleted one moved up

    changed, changed_tokens, changed_vectors = corpus(2, 6)  # the ids of chunks[0:6] (the first was deleted), new content
    more, more_tokens, more_vectors = corpus(3, 5, prefix="n")
    batch = changed + more
    batch_tokens, batch_vectors = changed_tokens + more_tokens, np.concatenate([changed_vectors, more_vectors])
    for b in (backend, ref):
        b.upsert(batch, batch_tokens, batch_vectors)  # replaced chunks go to the end, as new ones do
    assert len(backend) == 60 - 5 + 1 + 5
    check_against(backend, ref, rng)
    with pytest.raises(KogataError, match="query vector has 3 dimensions"):
        backend.dense(np.ones(3, np.float32), 5)
    with pytest.raises(ValueError, match="one token list"):
        backend.upsert(more, more_tokens[:2], more_vectors)


@pytest.mark.parametrize("kind", BACKENDS)
def test_bm25_only_backend_needs_no_vectors(kind, make_backend):
    backend, ref = make_backend(kind, dim=0), Reference(0)
    chunks, tokens, _ = corpus(4, 30)
    for b in (backend, ref):
        b.upsert(chunks, tokens, None)
        b.delete([chunks[3].chunk_id])
    assert backend.dense(np.ones(DIM, np.float32), 5) == []
    check_against(backend, ref, np.random.default_rng(0))


# ---- the same Retriever rankings on both, over real documents ----------------------------------------------
class BigramHashEmbedder:
    """A tiny deterministic embedder (hashed character bigrams, L2-normalised) so dense and hybrid modes run fast."""

    dim = 64

    def embed(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for a, b in zip(t, t[1:]):
                out[i, zlib.crc32((a + b).encode()) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

    embed_query = embed


def test_retriever_ranks_company_docs_identically_on_both_backends(make_backend):
    from kogata.search.chunk import ChunkerSettings, chunk_documents
    from kogata.search.ingest import read_documents
    from kogata.search.retrieve import Retriever
    from kogata.search.tokenize import bigram_tokens

    docs = read_documents([COMPANY_DOCS / "ja", COMPANY_DOCS / "shared"]).documents
    chunks = chunk_documents(docs, ChunkerSettings(300, 60))
    tokens = [bigram_tokens(c.embed_text) for c in chunks]
    embedder = BigramHashEmbedder()
    vectors = embedder.embed([c.embed_text for c in chunks])
    assert len(chunks) > 100
    retrievers = {}
    for kind in BACKENDS:
        backend = make_backend(kind, dim=embedder.dim)
        backend.upsert(chunks, tokens, vectors)
        retrievers[kind] = Retriever(backend, "bigram", embedder)
    queries = [json.loads(line)["query"] for line in (COMPANY_DOCS / "queries-ja.jsonl").read_text(encoding="utf-8").splitlines()[:60]]
    compared = 0
    for mode in ("bm25", "dense", "hybrid"):
        ranked = {kind: r.search_many(queries, 5, mode) for kind, r in retrievers.items()}
        for emb_hits, pg_hits in zip(ranked["embedded"], ranked["postgresql"]):
            assert [h.chunk.chunk_id for h in pg_hits] == [h.chunk.chunk_id for h in emb_hits]
            for e, p in zip(emb_hits, pg_hits):
                assert p.chunk == e.chunk and p.score == pytest.approx(e.score, abs=1e-5)
                assert (p.bm25 is None) == (e.bm25 is None) and (p.bm25 is None or abs(p.bm25 - e.bm25) < 1e-5)
                assert (p.similarity is None) == (e.similarity is None) and (p.similarity is None or abs(p.similarity - e.similarity) < 1e-5)
                compared += 1
    assert compared > 600  # most queries find five hits in every mode


# ---- an index artifact whose chunks live in PostgreSQL --------------------------------------------------------
def _write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_index_on_postgresql_builds_updates_and_searches_like_embedded(kogata_home, tmp_path, pg_server, monkeypatch):
    import psycopg

    from kogata.artifacts.store import Store
    from kogata.search.index import SearchIndex, build_index, index_artifacts, list_indexes, update_index

    docs = _write(tmp_path / "docs", {"returns.md": "# 返品\n返品は購入から30日以内に受け付けます。開封済みの商品は対象外です。",
                                      "ap-210.md": "# AP-210\nAP-210の保証期間は2年間です。フィルターは6か月ごとに交換してください。",
                                      "travel.md": "# Travel\nBook trains at least 14 days ahead. Hotel limit is 12,000 yen."})  # fmt: skip
    url = pg_server.new_database()
    monkeypatch.setenv("KOGATA_SEARCH_BACKEND", url.replace("kogata@", "kogata:secret@"))  # the password travels only here
    store = Store()
    pg = build_index(store, [docs], "kb", embedder="none", tokenizer="bigram", backend=url.replace("kogata@", "kogata:secret@"))
    flat = build_index(store, [docs], "flat", embedder="none", tokenizer="bigram")
    meta = json.loads((pg.artifact.path / "index.json").read_text(encoding="utf-8"))
    assert meta["backend"] == url and "secret" not in json.dumps(meta) and "secret" not in json.dumps(pg.artifact.lineage)
    assert not (pg.artifact.path / "chunks.sqlite").exists() and (flat.artifact.path / "chunks.sqlite").exists()
    with psycopg.connect(url) as conn:
        assert conn.execute(f'SELECT count(*) FROM kogata_search."{meta["backend_table"]}"').fetchone()[0] == pg.chunks > 0
    assert {r["name"]: r["backend"] for r in list_indexes(store)} == {"flat": "embedded", "kb": url}

    def ranked(name, query):
        index = SearchIndex.open(store, name)
        try:
            return [(h.chunk.chunk_id, h.score) for h in index.retriever(need_dense=False).search(query, 3)]
        finally:
            index.close()

    for q in ("AP-210の保証期間", "返品の期限", "hotel limit"):
        got, want = ranked("kb", q), ranked("flat", q)
        assert [c for c, _ in got] == [c for c, _ in want] != [] and [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-5)
    first_table = meta["backend_table"]
    (docs / "returns.md").unlink()
    for version in (2, 3):
        (docs / "new.md").write_text(f"# 新規 {version}\n新しい規程 {version} 版。", encoding="utf-8")
        rep = update_index(store, "kb")
        assert rep.version == version and rep.artifact.manifest["index"]["version"] == version
    assert ranked("kb", "返品の期限") == []  # the removed document is gone
    assert [a.manifest["index"]["version"] for a in index_artifacts(store, "kb")] == [2, 3]
    with psycopg.connect(url) as conn:  # version 1 left the store, and its tables the database
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'kogata_search'")}
    assert first_table not in tables and len(tables) == 4  # v2 and v3, chunks + terms each


def test_unreachable_server_and_missing_pgvector_are_one_line_errors(kogata_home, tmp_path, capsys, monkeypatch, pg_server):
    import socket

    from kogata.search.backend_pg import PostgresBackend, check_server
    from tests.cli_helpers import run_cli

    docs = _write(tmp_path / "docs", {"a.md": "# A\n本文です。"})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    dead = f"postgresql://kogata:hunter2@127.0.0.1:{closed_port}/search"
    code, out, err = run_cli(capsys, monkeypatch, "index", "build", str(docs), "--name", "kb", "--embedder", "none", "--tokenizer", "bigram",
                             "--backend", dead)  # fmt: skip
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), err
    assert f"PostgreSQL at postgresql://kogata:***@127.0.0.1:{closed_port}/search does not answer" in err and "hunter2" not in err
    assert "start the server" in err
    code, out, _ = run_cli(capsys, monkeypatch, "index", "list", "--json")
    assert code == 0 and json.loads(out) == []  # nothing was half-written
    code, _, err = run_cli(capsys, monkeypatch, "index", "build", str(docs), "--name", "kb", "--backend", "mysql://x@y/z")
    assert code == 2 and "unknown search backend 'mysql://x@y/z'" in err

    # a server where this user may not enable pgvector
    import psycopg

    url = pg_server.new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE ROLE reader LOGIN")
        conn.execute("GRANT ALL ON DATABASE " + url.rsplit("/", 1)[1] + " TO reader")
    reader = url.replace("kogata@", "reader@")
    with pytest.raises(KogataError, match="the pgvector extension is not enabled in .* and this user may not enable it"):
        check_server(reader, need_pgvector=True)
    check_server(reader, need_pgvector=False)  # a BM25-only index does not need it
    with pytest.raises(KogataError, match="table kogata_search.missing_v1 is missing"):
        PostgresBackend(url, "missing_v1", 0)


def test_server_without_pgvector_says_how_to_install_it(tmp_path):
    """Debian's own PostgreSQL (no pgvector package in Debian 12): a clear error, and BM25-only still works."""
    from kogata.search.backend_pg import PostgresBackend, check_server, table_for

    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if not debian or any(Path("/usr/share/postgresql").glob("*/extension/vector.control")):
        pytest.skip("needs Debian's postgresql package without pgvector")
    try:
        with start_server(bin_dir=debian[-1].parent) as server:
            url = server.new_database()
            with pytest.raises(KogataError, match=r"has no pgvector extension .* install pgvector on the server"):
                check_server(url, need_pgvector=True)
            backend = PostgresBackend(url, table_for("lex", 1), 0, create=True)
            chunks, tokens, _ = corpus(5, 12)
            backend.upsert(chunks, tokens, None)
            ref = Reference(0)
            ref.upsert(chunks, tokens, None)
            assert_same_ranking(backend.lexical(["語1", "語2"], 5), ref.lexical(["語1", "語2"], 5))
            backend.close()
    except ServerUnavailable as exc:
        pytest.skip(f"Debian's PostgreSQL could not start: {exc}")


def test_urls_keep_the_password_out_of_records_and_messages(monkeypatch):
    from kogata.search.backend_pg import _split, _with_env_password, is_postgres_url, masked_url, public_url

    url = "postgresql+psycopg://kogata:s3cr%40t@db.example:5433/search?sslmode=require&password=other&hnsw=on"
    assert is_postgres_url(url) and is_postgres_url("postgres://x@y/z") and not is_postgres_url("embedded")
    assert not is_postgres_url("mysql://x@y/z") and not is_postgres_url("postgresql")
    assert public_url(url) == "postgresql://kogata@db.example:5433/search?sslmode=require&hnsw=on"
    shown = masked_url(url)
    assert "s3cr" not in shown and "other" not in shown and "kogata:***@db.example:5433" in shown
    libpq, _, options = _split("postgresql://u@h/db?options=-c%20work_mem%3D64MB&hnsw=1")
    assert libpq == "postgresql://u@h/db?options=-c%20work_mem%3D64MB" and options == {"hnsw": "1"}
    monkeypatch.setenv("KOGATA_SEARCH_BACKEND", "postgresql://kogata:pw@db.example:5433/search?sslmode=require&hnsw=on")
    assert _with_env_password(public_url(url)).startswith("postgresql://kogata:pw@")  # the same server: its password is used
    assert _with_env_password("postgresql://kogata@elsewhere/search") == "postgresql://kogata@elsewhere/search"


def test_postgresql_backend_reconnects_after_the_server_drops_it(make_backend, pg_url):
    import psycopg

    backend = make_backend("postgresql")
    chunks, tokens, vectors = corpus(6, 20)
    backend.upsert(chunks, tokens, vectors)
    want_lexical, want_dense = backend.lexical(["語1", "語2"], 5), backend.dense(vectors[2], 5)
    first_pid = backend._conn.info.backend_pid
    with psycopg.connect(pg_url, autocommit=True) as admin:  # what a server restart or an idle timeout does
        admin.execute("SELECT pg_terminate_backend(%s)", [first_pid])
    assert backend.lexical(["語1", "語2"], 5) == want_lexical and backend.dense(vectors[2], 5) == want_dense
    assert backend._conn.info.backend_pid != first_pid and not backend._conn.broken


def test_cli_builds_and_searches_an_index_on_postgresql(kogata_home, tmp_path, capsys, monkeypatch, pg_server):
    from tests.cli_helpers import run_cli

    docs = _write(tmp_path / "docs", {"ap-210.md": "# AP-210\nAP-210の保証期間は2年間です。", "returns.md": "# 返品\n返品は30日以内です。"})
    url = pg_server.new_database()
    monkeypatch.setenv("KOGATA_SEARCH_BACKEND", url)  # --backend's default
    code, out, err = run_cli(capsys, monkeypatch, "index", "build", str(docs), "--name", "kb", "--embedder", "none", "--tokenizer", "bigram")
    assert code == 0 and "built index kb v1" in out, err
    code, out, err = run_cli(capsys, monkeypatch, "search", "kb", "AP-210の保証期間", "-k", "1", "--json")
    assert code == 0 and json.loads(out)["results"][0]["source"] == "ap-210.md", err
    code, out, _ = run_cli(capsys, monkeypatch, "index", "list", "--json")
    assert json.loads(out)[0]["backend"] == url


def test_hnsw_option_adds_an_index_and_keeps_results_close_to_exact(pg_url):
    import psycopg

    from kogata.search.backend_pg import PostgresBackend, table_for

    backend = PostgresBackend(pg_url + "?hnsw=on", table_for("hnsw", 1), DIM, create=True)
    try:
        assert backend.hnsw and backend.url.endswith("?hnsw=on")  # recorded with the index, so opening it keeps HNSW
        chunks, tokens, vectors = corpus(8, 200)
        backend.upsert(chunks, tokens, vectors)
        backend.finish_build()
        with psycopg.connect(pg_url) as conn:
            indexes = [r[0] for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", [backend.table])]
        assert any("USING hnsw (embedding vector_ip_ops)" in d for d in indexes), indexes
        ref = Reference(DIM)
        ref.upsert(chunks, tokens, vectors)
        rng, found = np.random.default_rng(1), 0
        for qv in rng.normal(size=(10, DIM)).astype(np.float32):
            got, want = backend.dense(qv, 10), ref.dense(qv, 10)
            assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
            found += len({r for r, _ in got} & {r for r, _ in want})
        assert found >= 90  # approximate, but on 200 vectors with ef_search 100 nearly exact
        plan = backend._read(backend._sql("EXPLAIN SELECT row, embedding <#> %(q)s AS d FROM {schema}.{chunks} ORDER BY d LIMIT 10"),
                             {"q": vectors[0]})  # the statement dense() runs with ?hnsw=on  # fmt: skip
        assert "Index Scan using" in plan[1][0] and plan[1][0].split(" on ")[0].endswith("_hnsw"), plan
    finally:
        backend.drop()
        backend.close()


def test_serve_answers_search_requests_from_a_postgresql_index(tmp_path, kogata_home, pg_server, tiny_llama_gguf):
    from fastapi.testclient import TestClient

    from kogata.artifacts.importer import import_path
    from kogata.artifacts.store import Store
    from kogata.search.index import build_index
    from kogata.serve.app import create_app
    from kogata.serve.config import build_config

    store = Store()
    import_path(store, str(tiny_llama_gguf), name="tiny", log=lambda m: None)
    docs = _write(tmp_path / "docs", {"ap-210.md": "# AP-210\nAP-210の保証期間は2年間です。", "returns.md": "# 返品\n返品は30日以内です。",
                                      "travel.md": "# 出張\n出張の日当は3,000円です。"})  # fmt: skip
    build_index(store, [docs], "pg", embedder="none", tokenizer="bigram", backend=pg_server.new_database())
    build_index(store, [docs], "flat", embedder="none", tokenizer="bigram")
    cfg = build_config(artifacts=["tiny"], overrides={"ctx": 256, "parallel": 1})
    with TestClient(create_app(cfg, store=store)) as client:
        bodies = {name: client.post("/v1/search", json={"index": name, "query": "出張の日当はいくら", "k": 3}) for name in ("pg", "flat")}
    assert bodies["pg"].status_code == 200, bodies["pg"].text
    pg, flat = bodies["pg"].json(), bodies["flat"].json()
    assert pg["data"][0]["source"] == "travel.md" and pg["mode"] == "bm25"
    assert [h["chunk_id"] for h in pg["data"]] == [h["chunk_id"] for h in flat["data"]]
    assert [h["score"] for h in pg["data"]] == pytest.approx([h["score"] for h in flat["data"]], abs=1e-5)


def test_a_build_that_fails_midway_leaves_no_tables_and_no_artifact(kogata_home, tmp_path, pg_server, monkeypatch):
    import psycopg

    from kogata.artifacts.store import Store
    from kogata.search.backend_pg import PostgresBackend
    from kogata.search.index import build_index, index_artifacts

    docs = _write(tmp_path / "docs", {"a.md": "# A\n本文です。"})
    url = pg_server.new_database()

    def fail(self):  # a fault after the chunks were copied in, before the artifact is committed
        raise RuntimeError("disk full")

    monkeypatch.setattr(PostgresBackend, "finish_build", fail)
    store = Store()
    with pytest.raises(RuntimeError, match="disk full"):
        build_index(store, [docs], "kb", embedder="none", tokenizer="bigram", backend=url)
    assert index_artifacts(store, "kb") == []
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'kogata_search'").fetchone()[0] == 0
