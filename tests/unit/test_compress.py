"""`kogata compress`: methods registry, recipes, export-gguf and quantize on tiny models, and bad input."""

from __future__ import annotations

import errno
import os

import pytest

from kogata.artifacts.importer import import_local
from kogata.artifacts.store import Store
from kogata.core.errors import KogataError
from kogata.methods import registry
from tests.cli_helpers import run_cli


@pytest.fixture()
def tiny_store(kogata_home, tiny_llama_dir):
    store = Store()
    import_local(store, tiny_llama_dir, name="tiny", log=lambda m: None)
    return store


def _err_line(err: str) -> str:
    lines = [x for x in err.strip().splitlines() if x.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_list_methods(capsys, monkeypatch, kogata_home):
    code, out, _ = run_cli(capsys, monkeypatch, "compress", "--list")
    assert code == 0
    for name in ("export-gguf", "quantize"):
        assert name in out


def test_export_then_quantize_recipe(tiny_store, tmp_path, capsys, monkeypatch):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("version: 1\nsteps:\n  - method: export-gguf\n  - method: quantize\n    params: {type: Q8_0}\n")
    code, out, err = run_cli(capsys, monkeypatch, "compress", "tiny", "--recipe", str(recipe), "--out", "tiny-q8")
    assert code == 0, err
    store = Store()
    q8 = store.get("tiny-q8")
    f32 = store.get(q8.parent)
    assert q8.format == "gguf" and f32.format == "gguf" and f32.parent == store.get("tiny").id
    assert [s["method"] for s in q8.lineage] == ["import", "export-gguf", "quantize"]
    assert q8.lineage[-1]["config"]["type"] == "Q8_0" and not q8.lineage[-1]["config"]["calibration"]
    assert q8.lineage[-1]["metrics"]["requantized"] is False
    assert q8.bytes < f32.bytes
    # replaying the same recipe reuses the stored artifacts instead of recomputing
    n = len(store.list())
    code, out, err = run_cli(capsys, monkeypatch, "compress", "tiny", "--recipe", str(recipe), "--out", "tiny-q8")
    assert code == 0, err
    assert len(Store().list()) == n and "reusing" in err


def test_gguf_type_on_an_hf_artifact_exports_first(tiny_store, capsys, monkeypatch):
    """`compress HF -m quantize --set type=Q8_0`: export-gguf runs first, both steps are artifacts in the lineage,
    the output says what was added; a second run reuses both."""
    code, out, err = run_cli(capsys, monkeypatch, "compress", "tiny", "-m", "quantize", "-s", "type=Q8_0", "-o", "tiny-q8")
    assert code == 0, err
    store = Store()
    q8, base = store.get("tiny-q8"), store.get("tiny")
    f32 = store.get(q8.parent)
    assert q8.format == "gguf" and f32.format == "gguf" and f32.parent == base.id
    assert [s["method"] for s in q8.lineage] == ["import", "export-gguf", "quantize"]
    assert f32.lineage[-1]["config"] == {"out_type": "f32"} and q8.lineage[-1]["config"]["type"] == "Q8_0"
    assert q8.lineage[-1]["metrics"]["requantized"] is False
    assert "export-gguf (added)" in out and "quantize needed a gguf artifact: ran export-gguf first" in " ".join(out.split())
    assert "needs a gguf artifact and tiny is hf: running export-gguf" in err
    n = len(store.list())
    code, out, err = run_cli(capsys, monkeypatch, "compress", "tiny", "-m", "quantize", "-s", "type=Q8_0", "-o", "tiny-q8")
    assert code == 0, err
    assert len(Store().list()) == n and err.count("reusing") == 2


def test_recipe_step_with_a_gguf_type_on_hf_exports_first(tiny_store, tmp_path):
    """A recipe whose quantize step gets an hf artifact gets the export added before it; later steps go on from there."""
    from kogata.methods.recipe import run_steps
    from kogata.methods.registry import MethodContext

    store = Store()
    ctx = MethodContext(store=store, log=lambda m: None)
    done = run_steps(store.get("tiny"), [{"method": "quantize", "params": {"type": "Q4_0"}},
                                         {"method": "quantize", "params": {"type": "Q8_0"}}], ctx)
    assert [(d.step["method"], d.added_for, d.artifact.format) for d in done] == [
        ("export-gguf", "quantize", "gguf"), ("quantize", None, "gguf"), ("quantize", None, "gguf")]
    assert [s["method"] for s in done[-1].artifact.lineage] == ["import", "export-gguf", "quantize", "quantize"]
    # int8-dynamic wants hf: on a GGUF nothing converts back, quantize refuses with its own one-line error
    with pytest.raises(KogataError, match="int8-dynamic applies to hf artifacts"):
        run_steps(done[0].artifact, [{"method": "quantize", "params": {"type": "int8-dynamic"}}], ctx)


def test_k_quant_on_hf_exports_then_names_the_row_width(tiny_store, capsys, monkeypatch):
    code, _, err = run_cli(capsys, monkeypatch, "compress", "tiny", "-m", "quantize", "-s", "type=Q4_K_M")
    assert code == 2 and "multiple of 256" in _err_line(err)
    assert [a.format for a in Store().list()] == ["hf", "gguf"]  # the export is kept (and reused next time)


def test_requantizing_a_quantized_gguf_is_recorded(tiny_store, capsys, monkeypatch):
    assert run_cli(capsys, monkeypatch, "compress", "tiny", "-m", "export-gguf", "-o", "f32")[0] == 0
    assert run_cli(capsys, monkeypatch, "compress", "f32", "-m", "quantize", "-s", "type=Q8_0", "-o", "q8")[0] == 0
    code, _, err = run_cli(capsys, monkeypatch, "compress", "q8", "-m", "quantize", "-s", "type=Q4_0", "-o", "q4")
    assert code == 0, err
    step = Store().get("q4").lineage[-1]
    assert step["metrics"]["requantized"] is True and "Q8_0" in step["note"]


def test_torch_int8_marks_the_artifact(tiny_store, capsys, monkeypatch):
    code, _, err = run_cli(capsys, monkeypatch, "compress", "tiny", "-m", "quantize", "-s", "type=int8-dynamic")
    assert code == 0, err
    art = Store().get("tiny.int8")
    assert (art.path / "kogata_quantization.json").exists() and art.verify() == []


@pytest.mark.parametrize(
    "args,needles",
    [
        (["-m", "shrinkify"], ["unknown method", "export-gguf"]),
        (["-m", "quantize", "-s", "typ=Q8_0"], ["no parameter 'typ'", "did you mean 'type'"]),
        (["-m", "quantize", "-s", "type=Q9_X"], ["unknown quantization type", "Q4_K_M"]),
        (["-m", "export-gguf", "-s", "out_type=f8"], ["out_type='f8'", "f16"]),
        (["-m", "quantize", "-s", "novalue"], ["key=value"]),
    ],
)
def test_bad_method_input(tiny_store, capsys, monkeypatch, args, needles):
    n = len(Store().list())
    code, out, err = run_cli(capsys, monkeypatch, "compress", "tiny", *args)
    assert code == 2
    line = _err_line(err)
    for needle in needles:
        assert needle in line
    assert len(Store().list()) == n


def test_k_quant_the_architecture_cannot_take(tiny_store, capsys, monkeypatch):
    assert run_cli(capsys, monkeypatch, "compress", "tiny", "-m", "export-gguf", "-o", "f32")[0] == 0
    code, _, err = run_cli(capsys, monkeypatch, "compress", "f32", "-m", "quantize", "-s", "type=Q4_K_M")
    assert code == 2 and "multiple of 256" in _err_line(err)


def test_disk_full_mid_write_leaves_nothing(tiny_store, capsys, monkeypatch):
    import kogata.methods.gguf.writer as gguf_export

    real = gguf_export.export_hf_to_gguf

    def full_disk(hf_dir, out_file, out_type="f32", progress=None):
        out_file.write_bytes(b"GGUF" + b"\0" * 1000)  # half-written
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gguf_export, "export_hf_to_gguf", full_disk)
    n = len(Store().list())
    code, _, err = run_cli(capsys, monkeypatch, "compress", "tiny", "-m", "export-gguf")
    assert code == 2 and "no space left" in _err_line(err)
    store = Store()
    assert len(store.list()) == n and list(store.tmp_dir.iterdir()) == []
    monkeypatch.setattr(gguf_export, "export_hf_to_gguf", real)


def test_bad_recipe(tiny_store, tmp_path, capsys, monkeypatch):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("steps:\n  - method: export-gguf\n  - method: quantise\n")
    code, _, err = run_cli(capsys, monkeypatch, "compress", "tiny", "--recipe", str(recipe))
    assert code == 2 and "quantise" in _err_line(err) and "did you mean 'quantize'" in _err_line(err)
    assert len(Store().list()) == 1  # validated before the first step ran


def test_config_types_are_coerced():
    from kogata.methods.quantize.method import QuantizeConfig

    spec = registry.MethodSpec("x", QuantizeConfig, lambda a, c, x: a, ("gguf",), "")
    assert registry.build_config(spec, {"type": "Q8_0"}).type == "Q8_0"


def test_torch_runtime_applies_int8_marker(tiny_store, capsys, monkeypatch):
    import torch

    from kogata.runtimes import open_runtime

    assert run_cli(capsys, monkeypatch, "compress", "tiny", "-m", "quantize", "-s", "type=int8-dynamic")[0] == 0
    rt = open_runtime("torch", Store().get("tiny.int8"))
    try:
        assert rt.int8 and any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in rt.model.modules())
    finally:
        rt.close()


def test_quantize_keeps_llama_cpp_tensor_log_off_the_terminal(tiny_store, capfd):
    """llama.cpp's quantizer writes a line per tensor to fd 2; kogata captures it (a failure quotes its tail)."""
    from kogata.methods.quantize.method import c_stderr_to_log

    with c_stderr_to_log() as text:
        os.write(2, b"[ 1/ 2] blk.0.attn_k.weight converting to q8_0\n")
    assert "converting to q8_0" in text()
    assert "converting" not in capfd.readouterr().err

    from kogata.methods.registry import MethodContext, apply_method

    ctx = MethodContext(store=Store(), data=[], seed=0, log=lambda m: None)
    f32 = apply_method(Store().get("tiny"), "export-gguf", {}, ctx)
    q8 = apply_method(f32, "quantize", {"type": "Q8_0"}, ctx)
    assert q8.bytes < f32.bytes
    assert "converting to" not in capfd.readouterr().err
