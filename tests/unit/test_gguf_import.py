"""GGUF artifacts: import, validation, conversion to a float HF baseline, interrupted pulls."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest
import torch

from kogata.artifacts import catalog as catalog_mod
from kogata.artifacts import importer
from kogata.artifacts.load import load_torch
from kogata.artifacts.store import Staging, Store
from kogata.core.errors import KogataError
from tests.cli_helpers import run_cli

quiet = {"log": lambda m: None}


def test_gguf_import_and_convert_keeps_logits(kogata_home, tiny_llama_gguf):
    store = Store()
    g = importer.import_local(store, tiny_llama_gguf, name="tiny-gguf", **quiet)
    assert g.format == "gguf" and g.gguf_path.exists() and g.params > 0
    h = importer.convert_gguf_to_hf(store, g, name="tiny-hf", **quiet)
    assert h.format == "hf" and h.parent == g.id
    assert [s["method"] for s in h.lineage] == ["import", "gguf-to-hf"]
    assert h.lineage[-1]["source"] == tiny_llama_gguf.name
    m_gguf, tok = load_torch(g)
    m_hf, tok2 = load_torch(h)
    ids = tok("Please restart the app", return_tensors="pt").input_ids
    assert ids.tolist() == tok2("Please restart the app", return_tensors="pt").input_ids.tolist()
    assert torch.allclose(m_gguf(ids).logits, m_hf(ids).logits, atol=1e-5)


def test_truncated_gguf_is_refused(kogata_home, tmp_path, tiny_llama_gguf, capsys, monkeypatch):
    cut = tmp_path / "cut.gguf"
    data = tiny_llama_gguf.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    code, out, err = run_cli(capsys, monkeypatch, "models", "import", str(cut))
    assert code == 2 and "truncated" in err and len(err.strip().splitlines()) == 1
    assert Store().list() == []


def test_tampered_gguf_fails_verify(kogata_home, tiny_llama_gguf, capsys, monkeypatch):
    art = importer.import_local(Store(), tiny_llama_gguf, name="g", **quiet)
    with open(art.gguf_path, "r+b") as f:
        f.seek(-16, 2)
        f.write(b"\xff" * 8)
    code, out, err = run_cli(capsys, monkeypatch, "models", "verify", "g")
    assert code == 2 and "sha256" in err and "damaged" in err


@pytest.fixture()
def fake_catalog(monkeypatch, tiny_llama_gguf):
    entry = replace(
        catalog_mod.CATALOG["smollm2-135m"],
        name="tiny-cat",
        locate=lambda e, workdir: tiny_llama_gguf,
    )
    monkeypatch.setitem(catalog_mod.CATALOG, "tiny-cat", entry)
    monkeypatch.setattr(importer, "ensure_installed", lambda e, log: None)
    return entry


def test_pull_twice_reuses(kogata_home, fake_catalog):
    store = Store()
    a = importer.pull(store, "tiny-cat", **quiet)
    b = importer.pull(store, "tiny-cat", **quiet)
    assert a.id == b.id and a.format == "hf"
    assert {x.name for x in store.list()} == {"tiny-cat", "tiny-cat-gguf"}


def test_interrupted_pull_lists_no_broken_artifact_and_rerun_completes(kogata_home, fake_catalog, monkeypatch):
    store = Store()
    real_commit = Staging.commit

    def dying_commit(self, **kw):
        if kw.get("format") == "hf":
            raise KeyboardInterrupt  # killed half-way through the conversion
        return real_commit(self, **kw)

    monkeypatch.setattr(Staging, "commit", dying_commit)
    with pytest.raises(KeyboardInterrupt):
        importer.pull(store, "tiny-cat", **quiet)
    listed = Store().list()
    assert [a.name for a in listed] == ["tiny-cat-gguf"] and listed[0].verify() == []
    assert list(store.tmp_dir.iterdir()) == []
    monkeypatch.setattr(Staging, "commit", real_commit)
    art = importer.pull(Store(), "tiny-cat", **quiet)
    assert art.format == "hf" and art.parent == listed[0].id


def test_damaged_gguf_in_store_is_replaced_on_pull(kogata_home, fake_catalog):
    store = Store()
    g = importer.import_local(store, fake_catalog.locate(fake_catalog, store.tmp_dir), name="tiny-cat-gguf", **quiet)
    with open(g.gguf_path, "r+b") as f:
        f.seek(-8, 2)
        f.write(b"\x00" * 8)
    art = importer.pull(store, "tiny-cat", **quiet)
    assert store.get("tiny-cat-gguf").verify() == []
    assert art.parent == store.get("tiny-cat-gguf").id


def test_gguf_in_folder_is_found(kogata_home, tmp_path, tiny_llama_gguf):
    folder = tmp_path / "dl"
    folder.mkdir()
    shutil.copy(tiny_llama_gguf, folder)
    art = importer.import_local(Store(), folder, **quiet)
    assert art.format == "gguf"


def test_not_a_gguf(kogata_home, tmp_path):
    bogus = tmp_path / "x.gguf"
    bogus.write_bytes(b"NOTAGGUF" * 100)
    with pytest.raises(KogataError, match="not a readable GGUF"):
        importer.import_local(Store(), bogus, **quiet)
