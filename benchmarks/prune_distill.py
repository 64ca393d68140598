"""Prune SmolLM2-135M to ≤ 67 % of its parameters, then heal it by distillation; held-out bits per byte vs the teacher.

    python benchmarks/prune_distill.py [--minutes 30] [--threads 1] [--variants depth,width]

For each pruned student (``depth``: prune-depth target_ratio; ``width``: prune-width MLP + heads) it measures the
held-out bits per byte (bpb) of: the teacher, the pruned model without training, the pruned model distilled from
the teacher (KD), and the pruned model fine-tuned with plain cross-entropy (alpha=1) on the same data for the same
time. Held-out: ``docs_heldout.txt`` (never trained
on). By default the training and calibration texts are every training split of the suite (its documents, the FAQ
training contexts/questions/answers and the training tickets/summaries; ``--train``) — the held-out file is never
among them (the trainer's own 10 % held-out split of the training blocks picks the best checkpoint). Each training run
gets ``--minutes`` of wall time: the number of steps is set from a timed probe step so that the cosine schedule
ends inside the budget, and ``max_minutes`` stops it at the latest. Artifacts are reused when the same step ran
before (their recorded training time is reported).

bpb = −Σ log₂ p(token) / bytes, over the whole held-out file, scored with a rolling window (``--window`` tokens of
context, stride half a window), with BOS (or EOS) prepended so the first token is scored too.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch

SUITE = Path(__file__).resolve().parents[1] / "src" / "kogata" / "suites" / "support-desk-en"


def bits_per_byte(model, tokenizer, text: str, window: int = 1024) -> float:
    """−Σ log p / (bytes · ln 2) of ``text`` under ``model``: rolling windows of ``window`` tokens, stride window/2,
    so every token after the first window is scored with at least window/2 tokens of context."""
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    ids = [start] + tokenizer(text, add_special_tokens=False)["input_ids"]
    n, stride, nll, done = len(ids), max(1, window // 2), 0.0, 1  # done: next token index to score
    with torch.no_grad():
        for begin in range(0, n, stride):
            end = min(begin + window, n)
            x = torch.tensor([ids[begin:end]])
            logp = torch.log_softmax(model(input_ids=x, use_cache=False).logits[0, :-1].float(), dim=-1)
            first = max(done, begin + 1)  # token indices first..end-1 are new; logits row t predicts token begin+t+1
            rows = torch.arange(first - begin - 1, end - begin - 1)
            nll -= float(logp[rows, x[0, rows + 1]].sum())
            done = end
            if end == n:
                break
    return nll / (len(text.encode("utf-8")) * math.log(2))


def measure(art, held: str, window: int) -> float:
    from kogata.artifacts.load import load_torch

    model, tok = load_torch(art)
    return bits_per_byte(model, tok, held, window)


def probe_step_seconds(art, block: int, batch: int, alpha: float) -> float:
    """Seconds for one forward+backward+AdamW step on a batch like the trainer's (timed after one warm-up)."""
    from kogata.artifacts.load import load_torch

    model, _ = load_torch(art)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-9)
    x = torch.randint(0, model.config.vocab_size, (batch, block))
    times = []
    for _ in range(2):
        t = time.time()
        logits = model(input_ids=x, use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), x[:, 1:].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.time() - t)
    return times[-1] * (1.1 if alpha < 1 else 1.0)  # the KD term adds a little


def trained_before(store, student, teacher, label: str, alpha: float, args):
    """A distilled child of ``student`` made by this script with the same teacher, data, settings and budget."""
    want = {"teacher": teacher.id, "alpha": alpha, "temperature": args.temperature, "block_size": args.block_size,
            "batch_size": args.batch_size, "lr": args.lr, "max_minutes": args.minutes}
    for art in store.children(student.id):
        step = art.lineage[-1] if art.lineage else {}
        cfg = step.get("config", {})
        if (step.get("method") == "distill" and art.name.startswith(f"{student.name}.{label.lower()}")
                and all(cfg.get(k) == v for k, v in want.items())
                and bool(cfg.get("gen_prompts_file")) == bool(args.gen_per_prompt and alpha < 1)):
            return art
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--teacher", default="smollm2-135m")
    ap.add_argument("--minutes", type=float, default=30.0, help="training budget per trained variant")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variants", default="depth,width")
    ap.add_argument("--target-ratio", type=float, default=0.67)
    ap.add_argument("--block-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--alpha", type=float, default=0.5, help="CE weight of the KD runs")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--hidden-weight", type=float, default=0.0)
    ap.add_argument("--kl-rest", action="store_true", help="KD runs: KL over top-k + a rest-of-vocabulary bucket")
    ap.add_argument("--metric", default="block-influence", help="prune-depth importance: block-influence | loss")
    ap.add_argument("--gen-per-prompt", type=int, default=0,
                    help="KD runs also train on teacher samples: N continuations of each training paragraph's first words")
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--window", type=int, default=1024)
    ap.add_argument("--skip-ce", action="store_true", help="skip the plain CE fine-tuning reference")
    ap.add_argument("--train", default="docs_train.txt,faq_train.jsonl,tickets_train.jsonl",
                    help="training files of the English suite (comma separated); never docs_heldout.txt")
    args = ap.parse_args()

    import kogata.core.settings as settings
    from kogata.artifacts.store import Store
    from kogata.methods.registry import MethodContext, apply_method

    settings.set_threads(args.threads)
    store = Store()
    teacher = store.get(args.teacher)
    train_files = [SUITE / name for name in args.train.split(",") if name]
    if any(f.name == "docs_heldout.txt" for f in train_files):
        raise SystemExit("error: --train must not include the held-out file docs_heldout.txt")
    train, held = train_files[0], (SUITE / "docs_heldout.txt").read_text(encoding="utf-8")
    ctx = MethodContext(store=store, data=train_files, seed=0, log=lambda m: print(f"  · {m}", flush=True))
    rows = []
    t0 = time.time()
    base_bpb = measure(teacher, held, args.window)
    rows.append(("teacher", teacher, base_bpb, None))
    print(f"teacher {teacher.name}: {teacher.params / 1e6:.1f}M params, held-out {base_bpb:.4f} bpb ({time.time() - t0:.0f}s)", flush=True)
    prune = {
        "depth": ("prune-depth", {"target_ratio": args.target_ratio, "calib_tokens": 4096, "metric": args.metric}),
        "width": ("prune-width", {"mlp_ratio": 0.5, "heads_ratio": 0.67, "calib_tokens": 4096}),
    }
    prompts = None
    if args.gen_per_prompt:
        paragraphs = [p.split() for p in train.read_text(encoding="utf-8").split("\n\n") if p.strip()]
        prompts = Path(tempfile.mkdtemp()) / "prompts.jsonl"
        prompts.write_text("".join(json.dumps(" ".join(p[:12])) + "\n" for p in paragraphs for _ in range(args.gen_per_prompt)))
    for variant in [v for v in args.variants.split(",") if v]:
        method, params = prune[variant]
        student = apply_method(teacher, method, params, ctx)
        rows.append((f"{variant}: pruned", student, measure(student, held, args.window), None))
        print(f"{rows[-1][0]}: {student.params / teacher.params:.1%} params, {rows[-1][2]:.4f} bpb", flush=True)
        runs = [("KD", args.alpha)] + ([] if args.skip_ce else [("CE", 1.0)])
        for label, alpha in runs:
            earlier = trained_before(store, student, teacher, label, alpha, args)
            if earlier is not None:  # the planned step count depends on a timed probe, so match on the rest
                print(f"{variant}: {label} reusing {earlier.name} (trained earlier with the same settings and budget)", flush=True)
                rows.append((f"{variant}: pruned + {label}", earlier, measure(earlier, held, args.window), earlier.lineage[-1]["metrics"]))
                print(f"{rows[-1][0]}: {rows[-1][2]:.4f} bpb", flush=True)
                continue
            step_s = probe_step_seconds(student, args.block_size, args.batch_size, alpha)
            steps = max(4, int(args.minutes * 60 / step_s))
            cfg = {"teacher": teacher.id, "alpha": alpha, "temperature": args.temperature, "block_size": args.block_size,
                   "batch_size": args.batch_size, "lr": args.lr, "warmup": max(1, steps // 20), "steps": steps,
                   "max_minutes": args.minutes, "eval_every": max(1, steps // 10), "checkpoint_every": max(1, steps // 2),
                   "hidden_weight": args.hidden_weight if alpha < 1 else 0.0, "kl_rest": args.kl_rest and alpha < 1}
            if prompts is not None and alpha < 1:
                cfg.update(gen_prompts_file=str(prompts), gen_tokens=args.gen_tokens)
            print(f"{variant}: {label} (alpha={alpha}) {steps} steps planned from a {step_s:.1f}s probe step", flush=True)
            rest = "-rest" if cfg["kl_rest"] else ""
            ctx.out_name = f"{student.name}.{label.lower()}{rest}-a{alpha}-h{cfg['hidden_weight']}-g{args.gen_per_prompt if alpha < 1 else 0}-s{steps}-lr{args.lr}"
            trained = apply_method(student, "distill", cfg, ctx)
            ctx.out_name = None
            rows.append((f"{variant}: pruned + {label}", trained, measure(trained, held, args.window), trained.lineage[-1]["metrics"]))
            print(f"{rows[-1][0]}: {rows[-1][2]:.4f} bpb", flush=True)

    print(f"\nheld-out bits per byte ({len(held.encode())} bytes of docs_heldout.txt), threads={settings.get_threads()}, "
          f"torch threads={torch.get_num_threads()}, budget {args.minutes} min per trained variant, total {time.time() - t0:.0f}s")
    print(f"{'model':28} {'params':>8} {'vs teacher':>10} {'bpb':>7} {'bpb ratio':>9} {'steps':>6} {'stopped':>8} {'train s':>8} {'best':>5} {'gen s':>6}")
    for name, art, bpb, m in rows:
        m = m or {}
        print(f"{name:28} {art.params / 1e6:7.1f}M {art.params / teacher.params:10.1%} {bpb:7.4f} {bpb / base_bpb:9.3f} "
              f"{m.get('steps_done', ''):>6} {m.get('stopped_by', ''):>8} {m.get('train_seconds', ''):>8} {m.get('best_step', ''):>5} {m.get('gen_seconds', ''):>6}")
    target = [r for r in rows if r[0].endswith("+ KD")]
    for name, _, bpb, _ in target:
        print(f"{name}: {bpb / base_bpb:.3f}× teacher bpb — target ≤ 1.15×: {'reached' if bpb / base_bpb <= 1.15 else 'NOT reached'}")


if __name__ == "__main__":
    main()
