"""A grounded-answer generator tuned with LoRA: Gemma-3-270M taught to answer from passages with ``[n]``.

    OMP_WAIT_POLICY=passive python benchmarks/rag_lora.py [--steps 120] [--batch-size 4] [--rank 16] [--lr 3e-4]
                                                          [--quants Q8_0,Q4_K_M] [--langs en,ja] [--threads 2]
                                                          [--keep] [--markdown table.md] [--json raw.json]

1. **Data** (:mod:`kogata.search.train_data`): for each language, the company-docs queries that are *not* in the
   rag suite (``examples/company-docs-rag-{lang}.yaml``: 26 questions) and whose gold document is none of the
   suite's gold documents — whole documents are held out, so no fact asked in the evaluation is seen in
   training — plus the unanswerable queries outside the suite. Each becomes the suite's own plain prompt with the
   passages the suite's retriever returns (hybrid, top 3) and the target "answer [n]", or "not in the documents"
   when no retrieved passage holds the answer.
2. **Tuning**: ``lora`` on the catalog's ``gemma3-270m`` (rank ``--rank``, all linear layers, loss on the
   answer, ``plain_prompt``) → ``merge`` → ``export-gguf`` → ``quantize`` to each of ``--quants``.
3. **Evaluation**: the suite's ``rag_qa`` task (llama.cpp runtime, ``chat: auto`` → the plain prompt) on the
   shipped Gemma-3-270M Q4_K_M and on each tuned GGUF: F1 [95% CI], exact match, citation accuracy, context
   recall, grounded rate, unanswerable questions answered "not in the documents".

Artifacts are written to the store (``$KOGATA_HOME``) under ``rag-lora-*`` names and removed at the end unless
``--keep``. Timings of each stage are printed; the load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
BASE = "gemma3-270m"


def _split(task, lang: str) -> tuple[list[dict], dict]:
    """(training records, counts): the language's queries outside the suite, none about the suite's documents."""
    queries = [json.loads(line) for line in (ROOT / "examples" / "company-docs" / f"queries-{lang}.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    held_ids = {str(r["id"]) for r in task.records}
    held_docs = {g for r in task.records for g in (r.get("gold") or [])}
    train = [q for q in queries if str(q["id"]) not in held_ids and not set(q.get("gold") or []) & held_docs]
    return train, {"queries": len(queries), "suite": len(held_ids), "held_out_documents": len(held_docs), "train": len(train)}


def build_data(langs: list[str], out: Path) -> dict:
    from rag import tasks_for

    from kogata.search.train_data import grounded_examples, write_jsonl

    rows, info = [], {}
    for lang in langs:
        task = tasks_for(lang, "auto")[0]
        train, counts = _split(task, lang)
        embedder = task._open_embedder()
        try:
            retriever = task.new_retriever(embedder)
            language = task.answer_language
            examples, stats = grounded_examples(retriever, train, k=task.k, mode=task.mode, language=language)
        finally:
            embedder.close()
        rows += examples
        info[lang] = {**counts, **stats.to_dict()}
        print(f"data {lang}: {counts} → {stats.to_dict()}", flush=True)
    write_jsonl(rows, out)
    return info


def tune(store, data: Path, args) -> dict:
    from kogata.methods.registry import MethodContext, apply_method

    log = (lambda m: print(m, flush=True)) if args.verbose else (lambda m: None)
    base = store.get(BASE)
    times = {}
    t0 = time.perf_counter()
    ctx = MethodContext(store=store, data=[data], seed=0, log=log, out_name="rag-lora-adapter")
    params = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "rank": args.rank, "alpha": 2.0 * args.rank,
              "plain_prompt": True, "max_length": args.max_length, "save_every": 0, "gradient_checkpointing": True,
              "eval_fraction": 0.1}  # fmt: skip
    adapter = apply_method(base, "lora", params, ctx)
    times["lora_s"] = time.perf_counter() - t0
    metrics = adapter.lineage[-1].get("metrics", {})
    t0 = time.perf_counter()
    merged = apply_method(adapter, "merge", {}, MethodContext(store=store, log=log, out_name="rag-lora-merged"))
    gguf = apply_method(merged, "export-gguf", {}, MethodContext(store=store, log=log, out_name="rag-lora-f16"))
    quants = {}
    for q in args.quants:
        quants[q] = apply_method(gguf, "quantize", {"type": q}, MethodContext(store=store, log=log, out_name=f"rag-lora-{q.lower()}"))
    times["build_s"] = time.perf_counter() - t0
    return {"adapter": adapter, "merged": merged, "gguf": gguf, "quants": quants, "times": times, "train_metrics": metrics}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--quants", default="Q8_0,Q4_K_M")
    ap.add_argument("--langs", default="en,ja")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="first N questions of each suite (default: all 26)")
    ap.add_argument("--keep", action="store_true", help="keep the rag-lora-* artifacts in the store")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--markdown")
    ap.add_argument("--json")
    args = ap.parse_args()
    args.quants = [q for q in args.quants.split(",") if q]
    langs = [lang for lang in args.langs.split(",") if lang]

    from rag import SHIPPED, _fmt, finish, gguf_artifact, row, tasks_for

    import kogata.core.settings as settings
    import kogata.search  # noqa: F401  (registers rag_qa)
    from kogata.artifacts.store import Store
    from kogata.runtimes import open_runtime

    settings.set_threads(args.threads)
    store = Store()
    load_before = os.getloadavg()
    out: dict = {"machine": {"cores": os.cpu_count(), "threads": args.threads, "load_before": load_before}, "args": vars(args), "rows": []}
    data = store.tmp_dir / f"rag-lora-train-{os.getpid()}.jsonl"
    t0 = time.perf_counter()
    out["data"] = build_data(langs, data)
    out["data"]["seconds"] = time.perf_counter() - t0
    built = tune(store, data, args)
    out["times"] = built["times"]
    out["train_metrics"] = built["train_metrics"]
    print(f"LoRA {built['times']['lora_s'] / 60:.1f} min, merge + export + quantize {built['times']['build_s'] / 60:.1f} min; "
          f"train metrics {built['train_metrics']}", flush=True)  # fmt: skip
    variants = [(f"{BASE} {SHIPPED[BASE]} (shipped)", gguf_artifact(store, BASE))]
    variants += [(f"{BASE} + LoRA {q}", art) for q, art in built["quants"].items()]
    try:
        for label, art in variants:
            rt = open_runtime("llamacpp", art)
            try:
                for lang in langs:
                    res = tasks_for(lang, "auto")[0].run(rt, limit=args.limit)
                    out["rows"].append(row(label, "", lang, "with", res))
                    r = out["rows"][-1]
                    print(f"{label} {lang}: F1 {_fmt(r['f1'], True)}, citation {_fmt(r['citation_accuracy'])}, "
                          f"no-answer {_fmt(r['no_answer_acc'])}, {res['seconds']:.0f} s", flush=True)  # fmt: skip
                    if args.json:
                        Path(args.json).write_text(json.dumps(out, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
            finally:
                rt.close()
    finally:
        data.unlink(missing_ok=True)
        if not args.keep:
            for art in [*built["quants"].values(), built["gguf"], built["merged"], built["adapter"]]:
                store.remove(art.id)
    finish(out, load_before, args)


if __name__ == "__main__":
    main()
