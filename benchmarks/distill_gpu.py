"""The distill trainer on a CUDA GPU: same results as on CPU, and how fast (a device check; kogata never needs a GPU).

    python benchmarks/distill_gpu.py [--steps 20] [--big-steps 30]

1. **Equivalence.** A tiny llama teacher and student (same tokenizer, other weights) are distilled for ``--steps``
   steps twice with the same global batch: once under ``torchrun`` with 1 process on ``cuda:0`` (the trainer picks
   the GPU and the nccl backend when CUDA is available), once with 2 CPU processes (gloo, ``CUDA_VISIBLE_DEVICES``
   empty). Prints the largest weight difference and both runs' final losses. fp32 everywhere (TF32 off, torch's
   default), so the difference is float reordering, not precision.
2. **Speed.** A SmolLM2-135M-shaped teacher (30 blocks) and a 20-block student, randomly initialised from the
   config alone (no weights are downloaded), distilled for ``--big-steps`` steps of ``--big-batch`` × 256 tokens on
   the GPU and for a few steps on the CPU of the same machine (all its cores): training tokens/s of each.

Needs only the package and torch; the data is the English sample suite's training documents.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "kogata" / "suites" / "support-desk-en" / "docs_train.txt"


def distill(student: Path, teacher: Path, out: Path, tmp: Path, nproc: int, extra: list[str], cuda: bool) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", KOGATA_HOME=str(tmp / "home"))
    if not cuda:
        env["CUDA_VISIBLE_DEVICES"] = ""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           "-m", "kogata.methods.distill.method", "--student", str(student), "--teacher", str(teacher), "--data", str(DATA),
           "--out", str(out), "--run-dir", str(tmp / f"runs-{out.name}"), "--cache-dir", str(tmp / f"cache-{out.name}"), *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f"distill failed ({out.name}):\n{proc.stderr[-4000:]}")
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def big_pair(tmp: Path) -> tuple[Path, Path]:
    from transformers import AutoModelForCausalLM, LlamaConfig

    from tests.tiny_models import make_tokenizer

    tok = make_tokenizer()
    folders = []
    for name, layers in (("teacher", 30), ("student", 20)):
        cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=layers,
                          num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
                          tie_word_embeddings=True, rms_norm_eps=1e-5, rope_theta=100000.0,
                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        torch.manual_seed(len(folders))
        model = AutoModelForCausalLM.from_config(cfg)
        folder = tmp / f"big-{name}"
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        folders.append(folder)
    return folders[1], folders[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--big-steps", type=int, default=30)
    ap.add_argument("--big-batch", type=int, default=16)
    ap.add_argument("--cpu-steps", type=int, default=3)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this check needs a GPU (kogata itself does not)")
    sys.path.insert(0, str(ROOT))
    from tests.tiny_models import make_tiny_model

    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}, CPU cores {os.cpu_count()}", flush=True)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        teacher, student = make_tiny_model(tmp / "teacher", "llama", seed=0), make_tiny_model(tmp / "student", "llama", seed=1)
        common = ["--steps", str(args.steps), "--batch-size", "2", "--block-size", "32", "--lr", "1e-3", "--warmup", "2",
                  "--alpha", "0.5", "--topk", "16", "--eval-fraction", "0", "--seed", "3", "--threads", "1"]
        gpu = distill(student, teacher, tmp / "gpu", tmp, 1, [*common, "--grad-accum", "2"], cuda=True)
        cpu = distill(student, teacher, tmp / "cpu", tmp, 2, [*common, "--grad-accum", "1"], cuda=False)
        a, b, start = weights(tmp / "gpu"), weights(tmp / "cpu"), weights(student)
        diff = max(float((a[k] - b[k]).abs().max()) for k in a)
        moved = max(float((a[k] - start[k]).abs().max()) for k in a)
        print(f"\n1. equivalence, tiny llama, {args.steps} steps, global batch 4 × 32 tokens")
        print(f"   cuda:0, 1 process (grad_accum 2): device={gpu.get('device')} world={gpu.get('world_size')}")
        print(f"   cpu, 2 processes (grad_accum 1):  device={cpu.get('device')} world={cpu.get('world_size')}")
        print(f"   max |gpu - cpu| weight difference {diff:.2e} (weights moved up to {moved:.2e} from the start)")

        s, t = big_pair(tmp)
        big = ["--block-size", "256", "--lr", "3e-4", "--warmup", "2", "--alpha", "0.5", "--topk", "64",
               "--eval-fraction", "0", "--seed", "0"]
        g = distill(s, t, tmp / "big-gpu", tmp, 1, [*big, "--steps", str(args.big_steps), "--batch-size", str(args.big_batch)], cuda=True)
        c = distill(s, t, tmp / "big-cpu", tmp, 1, [*big, "--steps", str(args.cpu_steps), "--batch-size", "4",
                                                    "--threads", str(os.cpu_count())], cuda=False)
        print("\n2. speed, SmolLM2-135M-shaped teacher (30 blocks) → 20-block student, random weights, 256-token blocks")
        for name, m in (("cuda:0", g), (f"cpu {os.cpu_count()} threads", c)):
            rate = m["tokens_seen"] / max(m["train_seconds"], 1e-9)
            print(f"   {name:18} {m['steps_done']} steps, {m['tokens_seen']} tokens in {m['train_seconds']} s: {rate:,.0f} training tokens/s")
        print("\nraw metrics:", json.dumps({"tiny_gpu": gpu, "tiny_cpu": cpu, "big_gpu": g, "big_cpu": c}, default=str)[:6000])


if __name__ == "__main__":
    main()
