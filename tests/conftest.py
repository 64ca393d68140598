from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.tiny_models import make_tiny_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)
    yield


@pytest.fixture()
def kogata_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("KOGATA_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def tiny_gemma3_dir(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-gemma3"), "gemma3")


@pytest.fixture(scope="session", params=["llama", "gemma3"])
def tiny_hf_dir(request, tiny_llama_dir, tiny_gemma3_dir) -> Path:
    return {"llama": tiny_llama_dir, "gemma3": tiny_gemma3_dir}[request.param]


@pytest.fixture(scope="session")
def tiny_llama_gguf(tmp_path_factory, tiny_llama_dir) -> Path:
    from kogata.methods.gguf.writer import export_hf_to_gguf

    out = tmp_path_factory.mktemp("tiny-llama-gguf") / "tiny-llama-f32.gguf"
    export_hf_to_gguf(tiny_llama_dir, out, out_type="f32")
    return out


@pytest.fixture(scope="session")
def tiny_gemma3_gguf(tmp_path_factory, tiny_gemma3_dir) -> Path:
    from kogata.methods.gguf.writer import export_hf_to_gguf

    out = tmp_path_factory.mktemp("tiny-gemma3-gguf") / "tiny-gemma3-f32.gguf"
    export_hf_to_gguf(tiny_gemma3_dir, out, out_type="f32")
    return out


@pytest.fixture(scope="session")
def tiny_long_gguf(tmp_path_factory, tiny_llama_dir) -> Path:
    """The tiny llama with a 4,096-token context (rotary positions: only the config's limit changes), so that a
    grounded prompt with its rules and passages fits (byte-level tokens: a Japanese character is ~3)."""
    import json

    from kogata.methods.gguf.writer import export_hf_to_gguf

    folder = tmp_path_factory.mktemp("tiny-long")
    hf = folder / "hf"
    shutil.copytree(tiny_llama_dir, hf)
    cfg = json.loads((hf / "config.json").read_text(encoding="utf-8"))
    cfg["max_position_embeddings"] = 4096
    (hf / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    out = folder / "tiny-long-f32.gguf"
    export_hf_to_gguf(hf, out, out_type="f32")
    return out
