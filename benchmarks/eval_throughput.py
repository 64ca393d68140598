"""Multiple-choice scoring throughput: kogata's torch runtime vs lm-evaluation-harness's HF backend.

Same real model (the float SmolLM2-135M artifact), same task (the English support-desk intent task: 60 messages ×
5 continuations), same threads, one run. Each side is measured in its own subprocess (warm model load excluded
from the timed part on both sides is not possible for lm-eval, so both report wall time of the scoring call only
where they can: kogata times evaluate_quality; lm-eval times simple_evaluate minus its model load).

Prints tokens/s of each (tokens scored = context + continuation tokens of every request), the ratio
kogata ÷ lm-eval, and both accuracies (they must be identical).

    python benchmarks/eval_throughput.py [--threads 1] [--artifact smollm2-135m] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITE_DIR = Path(__file__).resolve().parent.parent / "src" / "kogata" / "suites" / "support-desk-en"
PROMPT = "Customer: {text}\nThis message is about"
CHOICES = {"billing": " a payment or a charge", "shipping": " a delivery", "returns": " returning a product",
           "technical": " a broken or faulty product", "account": " the customer's account"}
LABELS = list(CHOICES)


def rows() -> list[dict]:
    return [json.loads(line) for line in (SUITE_DIR / "intents.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]


def count_tokens(tokenizer) -> int:
    total = 0
    for r in rows():
        ctx = PROMPT.format(text=r["text"])
        for cont in CHOICES.values():
            total += len(tokenizer(ctx + cont, add_special_tokens=False).input_ids)
    return total


def run_kogata(artifact: str, threads: int) -> dict:
    import kogata.core.settings as settings
    from kogata.artifacts.store import Store
    from kogata.eval.quality import evaluate_quality
    from kogata.eval.suite import load_suite
    from kogata.runtimes import open_runtime

    settings.set_threads(threads)
    suite = load_suite("support-desk-en")
    rt = open_runtime("torch", Store().get(artifact))
    started = time.perf_counter()
    res = evaluate_quality(rt, suite, tasks=["intent"])
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "acc": res["intent"]["metrics"]["acc"]["value"], "tokens": count_tokens(rt.tokenizer)}


def run_lm_eval(artifact: str, threads: int) -> dict:
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from kogata.artifacts.store import Store

    torch.set_num_threads(threads)
    art = Store().get(artifact)
    work = Path(tempfile.mkdtemp())
    data = work / "intents.jsonl"
    data.write_text("\n".join(json.dumps({"text": r["text"], "label": LABELS.index(r["label"])}) for r in rows()), encoding="utf-8")
    (work / "task.yaml").write_text(
        "task: kogata_bench_intent\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: " + str(data) + "\n"
        "test_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "Customer: {{text}}\\nThis message is about"\n'
        f"doc_to_choice: {json.dumps(list(CHOICES.values()))}\n"
        'doc_to_target: "{{label}}"\ntarget_delimiter: ""\nmetric_list:\n  - metric: acc\n', encoding="utf-8")
    lm = HFLM(pretrained=str(art.path), dtype="float32", batch_size=8, device="cpu")  # loaded before timing
    started = time.perf_counter()
    res = simple_evaluate(model=lm, tasks=["kogata_bench_intent"], task_manager=TaskManager(include_path=str(work), include_defaults=False),
                          bootstrap_iters=0)
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "acc": res["results"]["kogata_bench_intent"]["acc,none"], "tokens": count_tokens(lm.tokenizer)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--artifact", default="smollm2-135m")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--worker", choices=["kogata", "lm-eval"])
    args = ap.parse_args()
    if args.worker:
        fn = run_kogata if args.worker == "kogata" else run_lm_eval
        print(json.dumps(fn(args.artifact, args.threads)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_OFFLINE": "1"}
    results: dict[str, list[dict]] = {"kogata": [], "lm-eval": []}
    for _ in range(args.repeats):
        for side in ("kogata", "lm-eval"):  # alternate so drift in machine load hits both sides alike
            out = subprocess.run([sys.executable, __file__, "--worker", side, "--threads", str(args.threads), "--artifact", args.artifact],
                                 env=env, capture_output=True, text=True, check=True)
            results[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"intent task (60 items × 5 choices) on {args.artifact}, threads={args.threads}, repeats={args.repeats}")
    speeds = {}
    for side, runs in results.items():
        tps = [r["tokens"] / r["seconds"] for r in runs]
        speeds[side] = statistics.median(tps)
        print(f"  {side:8} acc={runs[0]['acc']:.4f}  tokens/s median {speeds[side]:.0f}  [min {min(tps):.0f} – max {max(tps):.0f}]")
    same = all(r["acc"] == results["kogata"][0]["acc"] for r in results["kogata"] + results["lm-eval"])
    print(f"  ratio kogata ÷ lm-eval: {speeds['kogata'] / speeds['lm-eval']:.2f}×   accuracies identical: {same}")


if __name__ == "__main__":
    main()
