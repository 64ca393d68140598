"""LoRA fine-tuning of SmolLM2-135M on the support-desk FAQ, against a full fine-tune of the same model and data.

    python benchmarks/lora.py [--steps 60] [--threads 1] [--items 40] [--keep]

What it measures (every figure from this run, on this machine):

* trainable parameters (% of the model) of ``lora`` with its defaults (all linear layers, rank 8);
* peak RSS (``ru_maxrss`` of the process) and wall time of the ``lora`` method vs a full fine-tune with the same
  data pipeline, batch, steps and loop (each in its own subprocess), plus a process that only loads the model;
* the held-out task metric: token F1 (``kogata.eval.metrics.f1``) of greedy answers on
  ``suites/support-desk-en/faq.jsonl`` (questions not in the training file), prompted exactly as in training,
  and the mean per-token NLL of the gold answers — base model, adapter on base (torch), then after
  ``merge → export-gguf → quantize Q8_0 / Q4_K_M / Q4_0`` (``--quants``) on llama.cpp (F32 KV cache, so the weights are what differs).

Artifacts go to a temporary store (``--home`` to choose it, ``--keep`` to keep it); the base model is copied from
``$KOGATA_HOME`` (``kogata models pull smollm2-135m``). The targets of the issue are printed next to the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "src" / "kogata" / "suites" / "support-desk-en"
TRAIN = SUITE / "faq_train.jsonl"
HELDOUT = SUITE / "faq.jsonl"
BASE = "smollm2-135m"


SYSTEM = "Answer the question with a short phrase taken from the context."


def lora_params(args: argparse.Namespace) -> dict:
    return {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "rank": args.rank, "alpha": 2.0 * args.rank,
            "save_every": 0, "system_prompt": SYSTEM, "gradient_checkpointing": not args.no_gc}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ------------------------------------------------------------------------------------------------ workers
def worker(args: argparse.Namespace) -> dict:
    """Runs in its own process; returns what it measured (printed as JSON on the last line)."""
    import kogata.core.settings as settings

    settings.set_threads(args.threads)
    started = time.perf_counter()
    from kogata.artifacts.store import Store

    store = Store()
    base = store.get(BASE)
    if args.worker == "lora":
        from kogata.methods.registry import MethodContext, apply_method

        ctx = MethodContext(store=store, data=[TRAIN], seed=0, log=lambda m: print(m, file=sys.stderr, flush=True), out_name="faq-lora")
        art = apply_method(base, "lora", lora_params(args), ctx)
        return {"wall_s": time.perf_counter() - started, "peak_rss_mib": peak_rss_mib(), "adapter": art.id, "metrics": art.lineage[-1]["metrics"]}
    # full fine-tune: same data, split, loss, loop, batch and steps; every parameter trains
    from kogata.artifacts.load import load_torch
    from kogata.methods.lora.method import LoraMethodConfig, prepare_examples
    from kogata.methods.lora.train import TrainSettings, train

    cfg = LoraMethodConfig(**lora_params(args))
    model, tok = load_torch(base)
    data = prepare_examples(tok, cfg, [TRAIN], 0)
    import torch

    from kogata.methods.lora.data import collate

    with torch.no_grad():  # the weights are mmap-ed from the safetensors file: resident once a forward touched them
        model(**{k: v for k, v in collate(data["train"][:1], tok.pad_token_id).items() if k != "labels"})
    rss_loaded = peak_rss_mib()
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    for p in model.parameters():
        p.requires_grad_(True)
    n = sum(p.numel() for p in model.parameters())
    s = TrainSettings(steps=cfg.steps, batch_size=cfg.batch_size, lr=args.full_lr, schedule=cfg.schedule, seed=0)
    res = train(model, data["train"], [], s, pad_id=tok.pad_token_id, log=lambda m: print(m, file=sys.stderr, flush=True), what="full")
    return {"wall_s": time.perf_counter() - started, "peak_rss_mib": peak_rss_mib(), "rss_after_load_mib": rss_loaded,
            "trainable_params": n, "train_s": res.train_s, "train_loss_first": res.train_loss_first, "train_loss_last": res.train_loss_last}


def run_worker(kind: str, args: argparse.Namespace, env: dict) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--steps", str(args.steps), "--threads", str(args.threads),
           "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--full-lr", str(args.full_lr), "--rank", str(args.rank)]
    cmd += ["--no-gc"] if args.no_gc else []
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"worker {kind} failed with code {proc.returncode}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_s"] = time.perf_counter() - t
    return out


# ------------------------------------------------------------------------------------------------ evaluation
def heldout_items(tok, limit: int) -> list[dict]:
    import kogata.methods.lora.data as ld

    fmt = ld.Formatter(tok, system_prompt=SYSTEM)
    rows = [json.loads(x) for x in HELDOUT.read_text(encoding="utf-8").splitlines() if x.strip()][:limit]
    items = []
    for r in rows:
        user = ld.qa_prompt(r["question"], r.get("context", ""))
        items.append({"prompt": fmt.prompt_ids(user), "answer": fmt.answer_ids(user, r["answer"]), "gold": r["answer"]})
    return items


def score_torch(model, tok, items: list[dict], max_new: int, batch: int = 8) -> dict:
    """Greedy answers (left-padded batches) and the gold answers' NLL (the training loss code)."""
    import torch

    from kogata.eval.metrics import f1
    from kogata.methods.lora.data import IGNORE, Example, collate
    from kogata.methods.lora.train import batch_loss_sum

    pad = tok.pad_token_id
    f1s, nll, count = [], 0.0, 0
    with torch.no_grad():
        for i in range(0, len(items), batch):
            chunk = items[i : i + batch]
            width = max(len(it["prompt"]) for it in chunk)
            ids = torch.tensor([[pad] * (width - len(it["prompt"])) + it["prompt"] for it in chunk])
            mask = torch.tensor([[0] * (width - len(it["prompt"])) + [1] * len(it["prompt"]) for it in chunk])
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False,
                                 eos_token_id=tok.eos_token_id, pad_token_id=pad)
            for it, row in zip(chunk, out):
                f1s.append(f1(tok.decode(row[width:], skip_special_tokens=True).strip(), it["gold"]))
            exs = [Example(it["prompt"] + it["answer"], [IGNORE] * len(it["prompt"]) + it["answer"]) for it in chunk]
            loss, n = batch_loss_sum(model, collate(exs, pad))
            nll += float(loss)
            count += n
    return {"f1": sum(f1s) / len(f1s), "nll": nll / count}


def score_llamacpp(art, items: list[dict], max_new: int) -> dict:
    """Same through kogata's llamacpp runtime (F32 KV cache; logits only where a gold token is scored)."""
    from kogata.eval.metrics import f1
    from kogata.runtimes import open_runtime

    rt = open_runtime("llamacpp", art, n_ctx=1024, kv_type="f32")
    f1s = []
    for it in items:
        rt.llm.reset()
        out = rt.llm.create_completion(prompt=it["prompt"], max_tokens=max_new, temperature=0.0, top_k=1, repeat_penalty=1.0)
        f1s.append(f1(out["choices"][0]["text"].strip(), it["gold"]))
    rt.llm.reset()
    scored = rt.score_tokens([(it["prompt"], it["answer"]) for it in items])
    nll = -sum(lp for lp, _ in scored) / sum(len(it["answer"]) for it in items)
    rt.close()
    return {"f1": sum(f1s) / len(f1s), "nll": nll}


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--steps", type=int, default=6, help="optimizer steps, the same for LoRA and the full fine-tune")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for torch and llama.cpp")
    ap.add_argument("--batch-size", type=int, default=4, help="examples per step")
    ap.add_argument("--lr", type=float, default=1e-3, help="LoRA learning rate")
    ap.add_argument("--full-lr", type=float, default=2e-5, help="full fine-tune learning rate")
    ap.add_argument("--rank", type=int, default=4, help="LoRA rank (4 on all linear layers = 0.9%% of SmolLM2-135M; 8 = 1.8%%)")
    ap.add_argument("--no-gc", action="store_true", help="no gradient checkpointing (faster, much more memory) for both variants")
    ap.add_argument("--glibc-default", action="store_true",
                    help="train with glibc's default allocator settings; by default both variants run with MALLOC_MMAP_THRESHOLD_=65536, "
                         "without which glibc keeps freed activation memory and both peaks grow (LoRA the most, relatively)")
    ap.add_argument("--items", type=int, default=16, help="held-out FAQ items to score (40 = all)")
    ap.add_argument("--max-new-tokens", type=int, default=12, help="the held-out answers are 1-14 tokens")
    ap.add_argument("--quants", default="Q8_0,Q4_K_M,Q4_0",
                    help="GGUF types to quantize the merged model to; TYPE+imatrix calibrates on the suite's training "
                         "texts (docs, FAQ, tickets — not the held-out FAQ), +keep adds token_embd Q8_0, attn_v Q8_0 and "
                         "ffn_down Q6_K overrides, e.g. Q4_K_M+imatrix+keep")
    ap.add_argument("--skip-full", action="store_true", help="skip the full fine-tune (no RSS ratio)")
    ap.add_argument("--home", type=Path, help="store for the benchmark's artifacts (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary store")
    ap.add_argument("--worker", choices=["lora", "full"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    t0 = time.perf_counter()
    import kogata.core.settings as settings

    settings.set_threads(args.threads)
    from kogata.artifacts.importer import import_local
    from kogata.artifacts.store import Store

    user_store = Store()
    src = user_store.find(BASE)
    if src is None or src.format != "hf":
        raise SystemExit(f"{BASE} (hf) is not in {user_store.home}: run `kogata models pull {BASE}` first")
    home = args.home or Path(tempfile.mkdtemp(prefix="kogata-lora-bench-"))
    env = {**os.environ, "KOGATA_HOME": str(home), "KOGATA_THREADS": str(args.threads), "TRANSFORMERS_VERBOSITY": "error",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    if not args.glibc_default:
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"  # see --glibc-default
    os.environ.update(env)
    store = Store(home)
    if store.find(BASE) is None:
        import_local(store, src.path, name=BASE, log=lambda m: None)
    phases: dict[str, float] = {}
    try:
        t = time.perf_counter()
        lora = run_worker("lora", args, env)
        full = None if args.skip_full else run_worker("full", args, env)
        phases["train workers"] = time.perf_counter() - t

        from kogata.methods.lora.method import load_adapter_model
        from kogata.methods.registry import MethodContext, apply_method
        t = time.perf_counter()
        base_art, adapter = store.get(BASE), store.get(lora["adapter"])
        pm, tok = load_adapter_model(adapter, base_art)
        items = heldout_items(tok, args.items)
        with pm.disable_adapter():
            scores = {"base (torch)": score_torch(pm, tok, items, args.max_new_tokens)}
        scores["adapter on base (torch)"] = score_torch(pm, tok, items, args.max_new_tokens)
        del pm
        phases["torch eval"] = time.perf_counter() - t

        t = time.perf_counter()
        ctx = MethodContext(store=store, seed=0, log=lambda m: print(m, file=sys.stderr))
        merged = apply_method(adapter, "merge", {}, ctx)
        f32 = apply_method(merged, "export-gguf", {"out_type": "f32"}, ctx)
        quants = {q: apply_method(f32, "quantize", quant_params(q, home), ctx) for q in args.quants.split(",") if q}
        phases["merge+export+quantize"] = time.perf_counter() - t

        t = time.perf_counter()
        sizes = {"F32": f32.bytes, **{q: a.bytes for q, a in quants.items()}}
        for name, art in (("F32", f32), *quants.items()):
            scores[f"merged {name} (llama.cpp)"] = score_llamacpp(art, items, args.max_new_tokens)
        phases["llama.cpp eval"] = time.perf_counter() - t
    finally:
        if not args.keep and not args.home:
            shutil.rmtree(home, ignore_errors=True)
    report(args, lora, full, scores, sizes, phases, time.perf_counter() - t0, home if (args.keep or args.home) else None)


def quant_params(spec: str, home: Path) -> dict:
    """``Q4_K_M``, ``Q4_K_M+imatrix``, ``Q4_K_M+imatrix+keep`` → the quantize method's parameters."""
    qtype, *flags = spec.split("+")
    unknown = set(flags) - {"imatrix", "keep"}
    if unknown:
        raise SystemExit(f"--quants {spec!r}: unknown flag {sorted(unknown)[0]!r} (use TYPE, TYPE+imatrix, TYPE+imatrix+keep)")
    params: dict = {"type": qtype}
    if "imatrix" in flags:
        calib = home / "calibration-en"
        calib.mkdir(exist_ok=True)
        for name in ("docs_train.txt", "faq_train.jsonl", "tickets_train.jsonl"):
            shutil.copyfile(SUITE / name, calib / name)
        params["calibration"] = str(calib)
    if "keep" in flags:
        params.update(token_embedding_type="Q8_0", tensor_types={"attn_v": "Q8_0", "ffn_down": "Q6_K"})
    return params


def report(args, lora, full, scores, sizes, phases, total_s, kept) -> None:
    m = lora["metrics"]
    ref = scores["adapter on base (torch)"]
    print(f"\nLoRA on {BASE}: {args.steps} steps, batch {args.batch_size}, rank {args.rank}, lr {args.lr} (full FT lr {args.full_lr}), "
          f"gradient checkpointing {'off' if args.no_gc else 'on'} (both), glibc malloc {'default' if args.glibc_default else 'MALLOC_MMAP_THRESHOLD_=65536'} (both), "
          f"{args.threads} thread(s); "
          f"train {TRAIN.name} ({m['train_examples']} examples, {m['eval_examples']} held out), score {HELDOUT.name} ({args.items} items)\n")
    rows = [("trainable parameters", f"{m['trainable_params']:,} ({m['trainable_pct']:.2f}%)", "≤ 1%", m["trainable_pct"] <= 1.0)]
    if full:
        ratio = lora["peak_rss_mib"] / full["peak_rss_mib"]
        rows.append(("peak RSS: model resident / lora / full FT", f"{full['rss_after_load_mib']:.0f} / {lora['peak_rss_mib']:.0f} / {full['peak_rss_mib']:.0f} MiB", "", None))
        rows.append(("peak RSS lora / full fine-tune", f"{ratio:.2f}×", "≤ 0.6×", ratio <= 0.6))
        rows.append(("training time: lora / full FT", f"{m['train_s'] / m['steps_done']:.0f} / {full['train_s'] / args.steps:.0f} s per step", "", None))
        rows.append(("worker wall: lora / full FT", f"{lora['process_s']:.0f} s / {full['process_s']:.0f} s", "", None))
    else:
        rows.append(("peak RSS lora", f"{lora['peak_rss_mib']:.0f} MiB", "", None))
        rows.append(("worker wall: lora", f"{lora['process_s']:.0f} s", "", None))
    rows.append(("lora training speed", f"{m['tokens_per_s']:.0f} tok/s", "", None))
    rows.append(("train-split eval loss (lora) start → end", f"{m['eval_loss_start']:.3f} → {m['eval_loss_end']:.3f}", "", None))
    if full:
        rows.append(("train loss (full FT) first → last step", f"{full['train_loss_first']:.3f} → {full['train_loss_last']:.3f}", "", None))
    b = scores["base (torch)"]
    rows.append(("held-out F1 before → after", f"{b['f1']:.3f} → {ref['f1']:.3f}", "clearly up", ref["f1"] > b["f1"] + 0.05))
    rows.append(("held-out answer NLL before → after", f"{b['nll']:.3f} → {ref['nll']:.3f}", "down", ref["nll"] < b["nll"]))
    width = max(len(r[0]) for r in rows)
    for name, value, target, ok in rows:
        verdict = "" if ok is None else ("  ok" if ok else "  MISSED")
        print(f"  {name:<{width}}  {value:<28} {target}{verdict}")
    print(f"\n  {'model':<28} {'size':>10} {'F1':>7} {'ΔF1 rel':>8} {'NLL/token':>10} {'ΔNLL rel':>9}  target: < 2% worse than the adapter")
    for name, sc in scores.items():
        size = next((f"{v / 2**20:.0f} MiB" for k, v in sizes.items() if name == f"merged {k} (llama.cpp)"), "")
        d_f1 = (sc["f1"] - ref["f1"]) / ref["f1"] if ref["f1"] else 0.0
        d_nll = (sc["nll"] - ref["nll"]) / ref["nll"]
        verdict = ""
        if name.startswith("merged"):
            verdict = "  ok" if d_nll < 0.02 and d_f1 > -0.02 else "  MISSED"
        print(f"  {name:<28} {size:>10} {sc['f1']:>7.3f} {100 * d_f1:>+7.1f}% {sc['nll']:>10.4f} {100 * d_nll:>+8.2f}%{verdict}")
    print("\n  time: " + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items()) + f"; total {total_s:.0f} s ({total_s / 60:.1f} min)")
    if kept:
        print(f"  artifacts kept in {kept}")


if __name__ == "__main__":
    main()
