"""Query latency of the PostgreSQL + pgvector search backend next to the embedded one, on the same corpus.

    python benchmarks/search_pg.py [--chunks 10000] [--queries 200] [--rounds 3] [--tokenizer sudachi]
                                   [--url postgresql://user@host:port/db] [--json raw.json]

A synthetic corpus of ``--chunks`` chunks (four sentences sampled from the Japanese company handbook each, random
unit vectors of 384 dimensions, as multilingual-e5-small gives) goes into both backends; then, for queries made
of handbook sentence beginnings, each backend answers side by side (the order alternating per query):

* ``bm25``  — ``lexical(tokens, 50)`` (the retriever's pool) and the top 10 chunks fetched;
* ``dense`` — ``dense(vector, 50)`` exact, and the top 10 chunks fetched;
* ``dense-hnsw`` — the same through pgvector's HNSW index (``?hnsw=on``; approximate: its recall@10 against
  exact search is reported too).

One thread on our side (numpy/BLAS pinned to 1) and one PostgreSQL backend process (parallel workers off).
Without ``--url`` a throw-away server is started from the ``pgserver`` wheel (tests/unit/_pg.py). Every query's
top-10 rows must agree between the backends (checked; HNSW excepted). Latencies are per query, in ms: the median
over ``--rounds`` rounds of each round's p50 / p95, with the min–max across rounds. The machine is shared: the
load average is printed, and the figures are only as quiet as the machine was.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

ROOT = Path(__file__).resolve().parents[1]
DIM = 384
POOL, TOP = 50, 10


def corpus(n: int, tokenizer: str, seed: int = 0):
    import numpy as np

    from kogata.search.chunk import Chunk
    from kogata.search.tokenize import get_tokenizer

    tokenize = get_tokenizer(tokenizer)
    rng = np.random.default_rng(seed)
    texts = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "examples" / "company-docs" / "ja").rglob("*.md"))]
    sentences = [s + "。" for t in texts for s in t.replace("\n", "").split("。") if len(s) > 8]
    sentence_tokens = [tokenize(s) for s in sentences]
    chunks, tokens = [], []
    for i in range(n):
        picks = rng.integers(0, len(sentences), 4)
        text = "".join(sentences[j] for j in picks)
        chunks.append(Chunk(f"syn/{i}.md#0", f"syn/{i}.md", f"syn/{i}.md", "", 0, 0, len(text), text))
        tokens.append([t for j in picks for t in sentence_tokens[j]])
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return chunks, tokens, vectors, sentences, tokenize, rng


def timed(fn, *args) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args)
    return (time.perf_counter() - t0) * 1000, out


def summary(rounds: list[list[float]]) -> dict:
    def pct(xs, q):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(len(xs) * q))]

    p50s = [pct(r, 0.50) for r in rounds]
    p95s = [pct(r, 0.95) for r in rounds]
    return {"p50_ms": statistics.median(p50s), "p50_range": [min(p50s), max(p50s)],
            "p95_ms": statistics.median(p95s), "p95_range": [min(p95s), max(p95s)]}  # fmt: skip


def run(url: str, n: int, n_queries: int, n_rounds: int, tokenizer: str) -> dict:
    import numpy as np

    from kogata.search.backend import EmbeddedBackend
    from kogata.search.backend_pg import PostgresBackend, table_for

    chunks, tokens, vectors, sentences, tokenize, rng = corpus(n, tokenizer)
    out: dict = {"chunks": n, "queries": n_queries, "rounds": n_rounds, "tokenizer": tokenizer, "dim": DIM,
                 "postings": sum(len(set(t)) for t in tokens), "loadavg_before": os.getloadavg()}  # fmt: skip
    embedded = EmbeddedBackend(DIM)
    out["build_embedded_s"] = timed(lambda: (embedded.upsert(chunks, tokens, vectors), embedded.lexical(["返品"], 1)))[0] / 1000
    one_process = url + ("&" if "?" in url else "?") + "options=-c%20max_parallel_workers_per_gather%3D0"  # like our one thread
    pg = PostgresBackend(one_process, table_for("bench", 1), DIM, create=True)
    hnsw = PostgresBackend(one_process + "&hnsw=on", table_for("bench-hnsw", 1), DIM, create=True)
    try:
        def load(backend):
            for lo in range(0, n, 2000):
                backend.upsert(chunks[lo : lo + 2000], tokens[lo : lo + 2000], vectors[lo : lo + 2000])
            backend.finish_build()

        out["build_pg_s"] = timed(lambda: load(pg))[0] / 1000
        out["build_pg_hnsw_s"] = timed(lambda: load(hnsw))[0] / 1000
        queries = [sentences[j][:30] for j in rng.integers(0, len(sentences), n_queries)]
        qtokens = [tokenize(q) for q in queries]
        qvecs = rng.standard_normal((n_queries, DIM)).astype(np.float32)
        qvecs /= np.linalg.norm(qvecs, axis=1, keepdims=True)

        def bm25(backend, i):
            hits = backend.lexical(qtokens[i], POOL)
            return [(r, backend.chunk(r).chunk_id) for r, _ in hits[:TOP]]

        def dense(backend, i):
            hits = backend.dense(qvecs[i], POOL)
            return [(r, backend.chunk(r).chunk_id) for r, _ in hits[:TOP]]

        cases = {"bm25": (bm25, {"embedded": embedded, "postgresql": pg}),
                 "dense": (dense, {"embedded": embedded, "postgresql": pg}),
                 "dense-hnsw": (dense, {"postgresql-hnsw": hnsw})}  # fmt: skip
        for b in (pg, hnsw):  # warm the server's caches and our connection once
            for i in range(min(20, n_queries)):
                bm25(b, i), dense(b, i)
        mismatches, recall = 0, []
        for case, (fn, backends) in cases.items():
            times = {name: [[] for _ in range(n_rounds)] for name in backends}
            for rnd in range(n_rounds):
                for i in range(n_queries):
                    names = list(backends) if (i + rnd) % 2 == 0 else list(reversed(backends))
                    results = {}
                    for name in names:
                        if isinstance(backends[name], PostgresBackend):
                            backends[name]._chunks.clear()  # every query fetches its chunks from the server
                        ms, results[name] = timed(fn, backends[name], i)
                        times[name][rnd].append(ms)
                    if rnd == 0 and case != "dense-hnsw":
                        mismatches += results["embedded"] != results["postgresql"]
                    if rnd == 0 and case == "dense-hnsw":
                        exact = {r for r, _ in dense(embedded, i)}
                        recall.append(len(exact & {r for r, _ in results["postgresql-hnsw"]}) / TOP)
            out[case] = {name: summary(t) for name, t in times.items()}
        out["top10_mismatches"] = mismatches
        out["hnsw_recall_at_10"] = statistics.mean(recall) if recall else None
        out["loadavg_after"] = os.getloadavg()
    finally:
        for b in (pg, hnsw):
            b.drop()
            b.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunks", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokenizer", default="sudachi", choices=("sudachi", "bigram"))
    ap.add_argument("--url", help="an existing PostgreSQL with pgvector (default: start a throw-away one)")
    ap.add_argument("--json", type=Path, help="write the raw figures here")
    args = ap.parse_args()
    with contextlib.ExitStack() as stack:
        url = args.url
        if url is None:
            sys.path.insert(0, str(ROOT))
            from tests.unit._pg import start_server

            url = stack.enter_context(start_server()).new_database()
        res = run(url, args.chunks, args.queries, args.rounds, args.tokenizer)
    print(f"{res['chunks']} chunks ({res['postings']} postings, {args.tokenizer}), {res['queries']} queries x {res['rounds']} rounds; "
          f"load average before {res['loadavg_before'][0]:.2f}, after {res['loadavg_after'][0]:.2f}")  # fmt: skip
    print(f"build: embedded {res['build_embedded_s']:.1f} s, postgresql {res['build_pg_s']:.1f} s, with HNSW {res['build_pg_hnsw_s']:.1f} s")
    print("| query | backend | p50 ms (min–max over rounds) | p95 ms (min–max) |")
    print("|---|---|---|---|")
    for case in ("bm25", "dense", "dense-hnsw"):
        for name, s in res[case].items():
            print(f"| {case} | {name} | {s['p50_ms']:.2f} ({s['p50_range'][0]:.2f}–{s['p50_range'][1]:.2f}) | "
                  f"{s['p95_ms']:.2f} ({s['p95_range'][0]:.2f}–{s['p95_range'][1]:.2f}) |")  # fmt: skip
    print(f"top-10 rows differing between embedded and postgresql: {res['top10_mismatches']}; "
          f"HNSW recall@10 vs exact: {res['hnsw_recall_at_10']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
