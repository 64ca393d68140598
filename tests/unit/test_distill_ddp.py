"""The distill trainer on 2 CPU processes (torchrun, gloo) gives the same weights as one process with the same
global batch (batch_size × grad_accum × processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kogata.methods.distill.method import main
from tests.tiny_models import make_tiny_model

COMMON = ["--steps", "4", "--batch-size", "2", "--block-size", "16", "--lr", "1e-3", "--warmup", "1", "--alpha", "0.5",
          "--topk", "16", "--eval-fraction", "0", "--threads", "1", "--seed", "3"]


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """One thread (load_torch applies settings' count); what set_threads changes is restored afterwards."""
    import kogata.core.settings as settings

    monkeypatch.setattr(settings, "_threads", 1)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "KOGATA_THREADS"):
        monkeypatch.setenv(var, "1")


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


@pytest.fixture()
def folders(tmp_path, tiny_llama_dir):
    from tests.tiny_models import CORPUS

    student = make_tiny_model(tmp_path / "student", "llama", seed=1)  # same tokenizer, other weights
    data = tmp_path / "train.txt"
    data.write_text("\n\n".join(" ".join(CORPUS[(i + j) % len(CORPUS)] for j in range(3)) for i in range(30)), encoding="utf-8")
    return {"student": student, "teacher": tiny_llama_dir, "data": data, "tmp": tmp_path}


def _args(f: dict, out: str) -> list[str]:
    t = f["tmp"]
    return ["--student", str(f["student"]), "--teacher", str(f["teacher"]), "--data", str(f["data"]), "--out", str(t / out),
            "--run-dir", str(t / "runs"), "--cache-dir", str(t / "cache"), *COMMON]


def test_two_processes_match_one(folders, kogata_home, capsys):
    assert main(_args(folders, "single") + ["--grad-accum", "2"]) == 0
    single_out = capsys.readouterr().out
    env = dict(os.environ, OMP_NUM_THREADS="1", KOGATA_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "kogata.methods.distill.method", *_args(folders, "ddp"), "--grad-accum", "1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert len(lines) == 1 and lines[0]["world_size"] == 2  # only rank 0 writes
    assert json.loads(single_out.strip().splitlines()[-1])["world_size"] == 1
    a, b = _weights(folders["tmp"] / "single"), _weights(folders["tmp"] / "ddp")
    start = _weights(folders["student"])
    assert a.keys() == b.keys()
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    print(f"max |single - ddp| = {diff:.2e}")
    assert diff < 1e-5
    assert max(float((a[k] - start[k]).abs().max()) for k in a) > 1e-4  # and training did move the weights


def test_bad_folder_input(folders, kogata_home, capsys):
    f = dict(folders, data=folders["tmp"] / "tiny.txt")
    f["data"].write_text("hello", encoding="utf-8")
    assert main(_args(f, "x")) == 2
    assert "smaller than one batch" in capsys.readouterr().err
