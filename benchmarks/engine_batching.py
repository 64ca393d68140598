"""Aggregate decode throughput of the batched serving engine with 1/4/8/16 concurrent streams (no HTTP).

For each concurrency level N, a fresh process loads the GGUF into ``open_engine(parallel=max(N, --parallel))``,
warms up, then N client threads each submit one request (distinct short prompts, ``--tokens`` new tokens,
``ignore_eos`` so every stream generates exactly that many) at the same moment and read their streams.
Aggregate tok/s = all generated tokens / wall time from the first submit to the last final piece; TTFT is per
stream. Each level is repeated ``--repeats`` times in the same process; the median (and min/max) is reported.
Threads are recorded. Run it on a quiet machine: two llama.cpp threads collapse when another process takes a core.

    python benchmarks/engine_batching.py MODEL [--threads 2] [--clients 1,4,8,16] [--tokens 64] [--repeats 3]
        [--parallel 0] [--kv-unified] [--flash-attn] [--out results.json]

MODEL is a GGUF file path or a store artifact name/id (e.g. a catalog model pulled with ``kogata models pull``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

PROMPTS = [
    "Write a short note to a customer about a delayed parcel.",
    "冷蔵庫の保証について、お客様への返信を書いてください。",
    "Explain how to reset the SakuraHome app.",
    "List three things to check before returning a product.",
    "配送状況の確認方法を説明してください。",
    "Summarise the warranty terms in one paragraph.",
    "Draft an apology for a double charge on an invoice.",
    "アプリが起動しない場合の対処法を教えてください。",
]


def artifact_for(model: str) -> Any:
    path = Path(model)
    if path.suffix == ".gguf" and path.is_file():
        from kogata.artifacts.artifact import Artifact

        return Artifact(path=path.parent, manifest={"id": path.name, "name": path.stem, "format": "gguf", "model_file": path.name})
    from kogata.artifacts.store import Store

    return Store().get(model)


def measure_level(args: argparse.Namespace, clients: int) -> dict[str, Any]:
    from kogata.runtimes.base import GenerateRequest
    from kogata.runtimes.engine import open_engine

    parallel = max(clients, args.parallel)
    engine = open_engine(artifact_for(args.model), parallel=parallel, ctx=args.ctx, threads=args.threads,
                         kv_unified=args.kv_unified, flash_attn=args.flash_attn)
    engine.start()
    engine.submit(GenerateRequest(prompt="Hello", max_tokens=8, ignore_eos=True)).text()  # warm-up
    runs = []
    for _ in range(args.repeats):
        barrier = threading.Barrier(clients + 1)
        ttft: list[float] = [0.0] * clients
        counts: list[int] = [0] * clients

        def client(i: int, barrier: threading.Barrier = barrier, ttft: list = ttft, counts: list = counts) -> None:
            req = GenerateRequest(prompt=PROMPTS[i % len(PROMPTS)], max_tokens=args.tokens, ignore_eos=True)
            barrier.wait()
            started = time.perf_counter()
            for piece in engine.submit(req):
                if piece.token_ids and counts[i] == 0:
                    ttft[i] = time.perf_counter() - started
                counts[i] += len(piece.token_ids)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        barrier.wait()
        started = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        runs.append({"tok_s": sum(counts) / wall, "wall_s": wall, "tokens": sum(counts),
                     "ttft_p50_s": statistics.median(ttft), "ttft_max_s": max(ttft)})
    info = engine.info()
    engine.close()
    tok_s = [r["tok_s"] for r in runs]
    return {
        "clients": clients, "parallel": parallel, "threads": info["threads"], "tokens_per_stream": args.tokens,
        "kv_unified": args.kv_unified, "flash_attn": args.flash_attn, "gguf_file": info["gguf_file"],
        "tok_s_median": statistics.median(tok_s), "tok_s_min": min(tok_s), "tok_s_max": max(tok_s),
        "ttft_p50_s_median": statistics.median(r["ttft_p50_s"] for r in runs),
        "ttft_max_s_median": statistics.median(r["ttft_max_s"] for r in runs), "runs": runs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clients", default="1,4,8,16")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--parallel", type=int, default=0, help="engine slots (default: the number of clients)")
    ap.add_argument("--ctx", type=int, default=512, help="context per sequence")
    ap.add_argument("--kv-unified", action="store_true")
    ap.add_argument("--flash-attn", action="store_true")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--one-level", type=int, help=argparse.SUPPRESS)  # child mode: measure one level, print JSON
    args = ap.parse_args()
    if args.one_level:
        print(json.dumps(measure_level(args, args.one_level)))
        return
    rows = []
    for clients in [int(c) for c in args.clients.split(",")]:
        cmd = [sys.executable, __file__, args.model, "--one-level", str(clients), "--threads", str(args.threads),
               "--tokens", str(args.tokens), "--repeats", str(args.repeats), "--parallel", str(args.parallel),
               "--ctx", str(args.ctx)] + (["--kv-unified"] if args.kv_unified else []) + (["--flash-attn"] if args.flash_attn else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"measuring {clients} clients failed:\n{proc.stderr[-3000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{clients:>3} clients  {r['tok_s_median']:8.1f} tok/s  (min {r['tok_s_min']:.1f}, max {r['tok_s_max']:.1f})"
              f"  TTFT p50 {r['ttft_p50_s_median'] * 1000:7.1f} ms  threads={r['threads']}", flush=True)
    base = rows[0]["tok_s_median"]
    for r in rows:
        r["speedup_vs_first"] = r["tok_s_median"] / base if base else None
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
