"""prune-depth / prune-width on tiny models: importance picks dead parts, outputs load with plain transformers and
export to GGUF (llama.cpp gives the same logits), bad input is a one-line error."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
import torch

from kogata.artifacts.importer import import_local
from kogata.artifacts.store import Store
from kogata.core.errors import KogataError
from kogata.methods.registry import MethodContext, apply_method
from tests.cli_helpers import run_cli
from tests.tiny_models import CORPUS

CALIB = {"calib_tokens": 96, "calib_seq_len": 32}


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """One thread (load_torch applies settings' count); what set_threads changes is restored afterwards."""
    import kogata.core.settings as settings

    monkeypatch.setattr(settings, "_threads", 1)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "KOGATA_THREADS"):
        monkeypatch.setenv(var, "1")


def _four_layer(src: Path, dst: Path) -> Path:
    """The tiny llama with 4 blocks; block 2 is an identity (o_proj and down_proj zero), so it does nothing."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(src)
    cfg = base.config
    cfg.num_hidden_layers = 4
    torch.manual_seed(3)
    model = AutoModelForCausalLM.from_config(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
        model.model.layers[2].self_attn.o_proj.weight.zero_()
        model.model.layers[2].mlp.down_proj.weight.zero_()
    model.save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    return dst


@pytest.fixture(scope="module")
def tiny_qwen2_dir(tmp_path_factory) -> Path:
    from tests.tiny_models import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"), "qwen2")


@pytest.fixture()
def store(kogata_home, tmp_path, tiny_llama_dir, tiny_gemma3_dir, tiny_qwen2_dir):
    s = Store()
    import_local(s, tiny_llama_dir, name="llama", log=lambda m: None)
    import_local(s, tiny_gemma3_dir, name="gemma3", log=lambda m: None)
    import_local(s, tiny_qwen2_dir, name="qwen2", log=lambda m: None)
    import_local(s, _four_layer(tiny_llama_dir, tmp_path / "four"), name="four", log=lambda m: None)
    data = tmp_path / "calib.txt"
    data.write_text("\n\n".join(CORPUS * 3), encoding="utf-8")
    s.calib = data  # type: ignore[attr-defined]
    return s


def _apply(store, name, method, data=True, **params):
    ctx = MethodContext(store=store, data=[store.calib] if data else [], log=lambda m: None)
    return apply_method(store.get(name), method, params, ctx)


def _gguf_matches_torch(art, tmp_path) -> float:
    llama_cpp = pytest.importorskip("llama_cpp")
    from transformers import AutoModelForCausalLM

    from kogata.methods.gguf.writer import export_hf_to_gguf

    out = tmp_path / f"{art.id}.gguf"
    export_hf_to_gguf(art.path, out)
    ids = [1, 40, 41, 60, 70, 80, 90, 100, 120, 150, 7]
    ref = AutoModelForCausalLM.from_pretrained(art.path)(torch.tensor([ids])).logits[0].detach().numpy()
    llm = llama_cpp.Llama(model_path=str(out), n_ctx=32, n_threads=1, logits_all=True, verbose=False,
                          type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)
    with closing(llm):
        llm.eval(ids)
        got = np.asarray(llm.scores[: len(ids)], dtype=np.float32)
    return float(np.abs(got - ref).max() / np.abs(ref).max())


def test_block_influence_ranks_the_identity_block_least(store):
    art = _apply(store, "four", "prune-depth", n_remove=1, **CALIB)
    m = art.lineage[-1]["metrics"]
    assert m["removed_layers"] == [2] and m["kept_layers"] == [0, 1, 3]
    assert m["importance"][2] == pytest.approx(0.0, abs=1e-6) and min(m["importance"][:2] + m["importance"][3:]) > 1e-4
    assert m["calibration"] == "data"
    # removing a block that does nothing leaves the model's loss unchanged
    assert m["calib_loss_after"] == pytest.approx(m["calib_loss_before"], abs=1e-4)
    cfg = json.loads((art.path / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 3 and art.params < store.get("four").params


def test_loss_metric_and_self_generated_calibration(store):
    art = _apply(store, "four", "prune-depth", data=False, n_remove=1, metric="loss", **CALIB)
    m = art.lineage[-1]["metrics"]
    assert m["calibration"] == "self-generated" and m["metric"] == "loss"
    assert m["importance"][2] == pytest.approx(0.0, abs=1e-5)


def test_target_ratio_removes_just_enough(store):
    art = _apply(store, "four", "prune-depth", target_ratio=0.8, **CALIB)
    m = art.lineage[-1]["metrics"]
    assert m["params_kept_ratio"] <= 0.8 and len(m["removed_layers"]) == 1  # one block of four is enough here


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_depth_pruned_model_loads_and_exports_to_gguf(store, tmp_path, arch):
    art = _apply(store, arch, "prune-depth", layers=[1])
    cfg = json.loads((art.path / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 1
    if arch == "gemma3":
        assert cfg["layer_types"] == ["sliding_attention"]  # layer 0 of ["sliding_attention", "full_attention"]
    assert _gguf_matches_torch(art, tmp_path) < (5e-4 if arch == "gemma3" else 2e-5)


@pytest.mark.parametrize("arch,unit,heads,kv", [("llama", "query", 2, 2), ("gemma3", "group", 2, 1), ("qwen2", "query", 4, 2)])
def test_width_pruned_model_loads_and_exports_to_gguf(store, tmp_path, arch, unit, heads, kv):
    heads_ratio = 1.0 if arch == "qwen2" else 0.5  # llama.cpp's qwen2 cannot take fewer heads (see below)
    art = _apply(store, arch, "prune-width", mlp_ratio=0.5, heads_ratio=heads_ratio, heads_unit=unit, **CALIB)
    cfg = json.loads((art.path / "config.json").read_text())
    assert (cfg["intermediate_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]) == (64, heads, kv, 16)
    assert cfg["num_attention_heads"] % cfg["num_key_value_heads"] == 0
    assert _gguf_matches_torch(art, tmp_path) < (5e-4 if arch == "gemma3" else 2e-5)


def test_width_pruning_removes_exactly_the_dead_channels_and_heads(store, tmp_path):
    """Zero half of the MLP channels (gate rows) and one head per KV group (o_proj columns) in every block:
    importance must find them, and the pruned model must compute the same logits as the original."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = store.get("llama").path
    model = AutoModelForCausalLM.from_pretrained(src)
    dead_heads = {0: [1, 2], 1: [0, 3]}  # one per KV group (groups {0,1} and {2,3})
    with torch.no_grad():
        for i, layer in enumerate(model.model.layers):
            layer.mlp.gate_proj.weight[i * 32 : i * 32 + 64].zero_()
            for h in dead_heads[i]:
                layer.self_attn.o_proj.weight[:, h * 16 : (h + 1) * 16].zero_()
    model.save_pretrained(tmp_path / "dead")
    AutoTokenizer.from_pretrained(src).save_pretrained(tmp_path / "dead")
    import_local(store, tmp_path / "dead", name="dead", log=lambda m: None)
    art = _apply(store, "dead", "prune-width", mlp_ratio=0.5, heads_ratio=0.5, **CALIB)
    m = art.lineage[-1]["metrics"]
    assert m["kept_heads"] == [[0, 3], [1, 2]]
    pruned = AutoModelForCausalLM.from_pretrained(art.path)
    ids = torch.tensor([[1, 40, 41, 60, 70, 80, 90, 100]])
    with torch.no_grad():
        assert torch.allclose(pruned(ids).logits, model(ids).logits, atol=1e-5)


@pytest.mark.parametrize(
    "method,params,needle",
    [
        ("prune-depth", {"n_remove": 2}, "cannot remove 2 blocks"),
        ("prune-depth", {"n_remove": 0}, "n_remove must be at least 1"),
        ("prune-depth", {"layers": [0, 1]}, "cannot remove all 2 blocks"),
        ("prune-depth", {"layers": [5]}, "layers [5] do not exist"),
        ("prune-depth", {"target_ratio": 0}, "target_ratio must be in (0, 1]"),
        ("prune-depth", {"target_ratio": 0.1}, "cannot be reached"),
        ("prune-depth", {}, "exactly one of"),
        ("prune-width", {"mlp_ratio": 1.5}, "mlp_ratio must be in (0, 1]"),
        ("prune-width", {"heads_ratio": 0}, "heads_ratio must be in (0, 1]"),
        ("prune-width", {}, "removes nothing"),
        ("prune-width", {"mlp_ratio": 0.9}, "removes nothing"),  # 115 channels round back up to 128
    ],
)
def test_bad_input(store, method, params, needle):
    n = len(store.list())
    with pytest.raises(KogataError) as err:
        _apply(store, "llama", method, **params, **CALIB)
    assert needle in str(err.value) and err.value.hint
    assert len(Store().list()) == n


def test_qwen2_heads_are_refused(store):
    with pytest.raises(KogataError, match="cannot prune attention heads of a qwen2 model"):
        _apply(store, "qwen2", "prune-width", heads_ratio=0.5, **CALIB)


def test_gemma3_keeps_a_sliding_window_block(store):
    with pytest.raises(KogataError, match="without a sliding-window block"):
        _apply(store, "gemma3", "prune-depth", layers=[0])
    art = _apply(store, "gemma3", "prune-depth", n_remove=1, **CALIB)  # block 0 is the only sliding one
    assert art.lineage[-1]["metrics"]["kept_layers"] == [0]


def test_cli_error_line(store, capsys, monkeypatch):
    code, _, err = run_cli(capsys, monkeypatch, "compress", "llama", "-m", "prune-width", "-s", "heads_ratio=2")
    assert code == 2 and "heads_ratio must be in (0, 1]" in err


def test_same_method_on_other_data_gets_a_suffixed_default_name(store, tmp_path):
    first = _apply(store, "llama", "prune-width", mlp_ratio=0.5, **CALIB)
    other = tmp_path / "other.txt"
    other.write_text("\n\n".join(reversed(CORPUS)) * 5 + " 0123456789 ¥1,980", encoding="utf-8")
    ctx = MethodContext(store=store, data=[other], log=lambda m: None)
    second = apply_method(store.get("llama"), "prune-width", {"mlp_ratio": 0.5, **CALIB}, ctx)
    assert second.id != first.id and second.name == f"{first.name}-2"
    ctx.out_name = "mine"
    assert ctx.artifact_name(first.name) == "mine"  # a name the user chose is kept (a clash is an error at commit)
