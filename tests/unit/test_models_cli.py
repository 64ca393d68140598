"""`kogata models …`: happy paths and every bad input from the foundation issue (one line, exit 2, nothing written)."""

from __future__ import annotations

import shutil

import pytest
import torch

from kogata.artifacts.catalog import CATALOG
from kogata.artifacts.store import Store
from tests.cli_helpers import run_cli


def _assert_user_error(code, out, err, *needles):
    assert code == 2, (code, out, err)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:")
    for n in needles:
        assert n in lines[0], lines[0]


def _store_is_empty():
    store = Store()
    return store.list() == [] and list(store.tmp_dir.iterdir()) == []


def test_list_shows_catalog(kogata_home, capsys, monkeypatch):
    code, out, _ = run_cli(capsys, monkeypatch, "models", "list")
    assert code == 0
    for name in CATALOG:
        assert name in out


def test_import_show_verify(kogata_home, tiny_llama_dir, capsys, monkeypatch):
    code, out, err = run_cli(capsys, monkeypatch, "models", "import", str(tiny_llama_dir), "--name", "tiny")
    assert code == 0, err
    code, out, _ = run_cli(capsys, monkeypatch, "models", "show", "tiny")
    assert code == 0 and "lineage" in out and "import" in out
    code, out, _ = run_cli(capsys, monkeypatch, "models", "verify", "tiny")
    assert code == 0 and "ok" in out


def test_nonexistent_path(kogata_home, tmp_path, capsys, monkeypatch):
    _assert_user_error(*run_cli(capsys, monkeypatch, "models", "import", str(tmp_path / "nope")), "does not exist")
    assert _store_is_empty()


def test_folder_that_is_not_a_model(kogata_home, tmp_path, capsys, monkeypatch):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("hello")
    _assert_user_error(*run_cli(capsys, monkeypatch, "models", "import", str(tmp_path / "docs")), "not a model folder")
    assert _store_is_empty()


def test_unsupported_architecture(kogata_home, tmp_path, tiny_llama_dir, capsys, monkeypatch):
    bad = tmp_path / "weird"
    shutil.copytree(tiny_llama_dir, bad)
    cfg = (bad / "config.json").read_text().replace('"model_type": "llama"', '"model_type": "not_a_real_arch"')
    (bad / "config.json").write_text(cfg)
    _assert_user_error(*run_cli(capsys, monkeypatch, "models", "import", str(bad)), "not_a_real_arch", "not supported")
    assert _store_is_empty()


def test_pickle_checkpoint_refused_then_allowed(kogata_home, tmp_path, tiny_llama_dir, capsys, monkeypatch):
    from transformers import AutoModelForCausalLM

    pk = tmp_path / "pickled"
    pk.mkdir()
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    torch.save(model.state_dict(), pk / "pytorch_model.bin")
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_llama_dir / f, pk)
    assert (pk / "pytorch_model.bin").exists() and not list(pk.glob("*.safetensors"))
    capsys.readouterr()
    _assert_user_error(*run_cli(capsys, monkeypatch, "models", "import", str(pk)), "pickle", "--allow-pickle")
    assert _store_is_empty()
    code, out, err = run_cli(capsys, monkeypatch, "models", "import", str(pk), "--allow-pickle", "--name", "pk")
    assert code == 0, err
    art = Store().get("pk")
    assert list(art.path.glob("*.safetensors")) and not list(art.path.glob("*.bin"))
    from kogata.artifacts.load import load_torch

    loaded, _ = load_torch(art)
    ref = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    ids = torch.tensor([[1, 5, 9, 12]])
    assert torch.allclose(loaded(ids).logits, ref(ids).logits, atol=1e-6)


def test_single_pickle_file_refused(kogata_home, tmp_path, capsys, monkeypatch):
    f = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, f)
    _assert_user_error(*run_cli(capsys, monkeypatch, "models", "import", str(f)), "pickle")


def test_unknown_catalog_name(kogata_home, capsys, monkeypatch):
    _assert_user_error(*run_cli(capsys, monkeypatch, "models", "pull", "gpt-17"), "gpt-17", "smollm2-135m")


def test_unknown_artifact(kogata_home, capsys, monkeypatch):
    _assert_user_error(*run_cli(capsys, monkeypatch, "models", "show", "missing"), "missing")


def test_unwritable_home(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("KOGATA_HOME", str(blocker / "home"))
    _assert_user_error(*run_cli(capsys, monkeypatch, "models", "list"), "not writable", "KOGATA_HOME")


def test_hub_id_offline_fails_clearly(kogata_home, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _assert_user_error(*run_cli(capsys, monkeypatch, "models", "import", "HuggingFaceTB/SmolLM2-135M"), "hub", "kogata models import PATH")
    assert _store_is_empty()


def test_bad_threads(kogata_home, capsys, monkeypatch):
    _assert_user_error(*run_cli(capsys, monkeypatch, "--threads", "0", "models", "list"), "--threads")


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_load_torch_from_hf_artifact_matches_source(kogata_home, tiny_llama_dir, tiny_gemma3_dir, arch):
    from transformers import AutoModelForCausalLM

    from kogata.artifacts.importer import import_local
    from kogata.artifacts.load import load_torch

    src = {"llama": tiny_llama_dir, "gemma3": tiny_gemma3_dir}[arch]
    art = import_local(Store(), src, name=arch, log=lambda m: None)
    model, tok = load_torch(art)
    ref = AutoModelForCausalLM.from_pretrained(src)
    ids = tok("冷蔵庫の保証 warranty", return_tensors="pt").input_ids
    assert torch.allclose(model(ids).logits, ref(ids).logits, atol=1e-6)


@pytest.mark.parametrize("args, said", [(("store", "list"), "No such command 'store'"),
                                        (("models", "list", "--bogus"), "No such option: --bogus")])
def test_usage_errors_are_one_message_and_exit_2_not_a_traceback(kogata_home, capsys, monkeypatch, args, said):
    code, out, err = run_cli(capsys, monkeypatch, *args)
    assert code == 2 and said in err and "Traceback" not in err + out
