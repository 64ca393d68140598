"""The store: artifacts are immutable, content-addressed, written atomically and indexed in SQLite."""

from __future__ import annotations

import json
import os

import pytest

from kogata.artifacts.artifact import LineageStep
from kogata.artifacts.importer import import_local
from kogata.artifacts.store import Store
from kogata.core.errors import KogataError


def test_import_hf_folder_writes_manifest(kogata_home, tiny_llama_dir):
    store = Store()
    art = import_local(store, tiny_llama_dir, name="tiny", log=lambda m: None)
    assert art.format == "hf" and art.architecture == "llama"
    assert art.path.parent == store.artifacts_dir and art.path.name == art.id
    manifest = json.loads((art.path / "kogata.json").read_text())
    assert manifest["files"] and all(len(h) == 64 for h in manifest["files"].values())
    assert manifest["lineage"][0]["method"] == "import"
    assert manifest["params"] > 10_000 and manifest["bytes"] > 0
    assert "torch" in manifest["tool_versions"]
    assert art.verify() == []
    # a fresh Store sees it through the SQLite index, by name and by id prefix
    again = Store()
    assert again.get("tiny").id == art.id
    assert again.get(art.id[:6]).id == art.id


def test_same_content_is_reused_and_names_are_unique(kogata_home, tiny_llama_dir, tiny_gemma3_dir):
    store = Store()
    a = import_local(store, tiny_llama_dir, name="one", log=lambda m: None)
    b = import_local(store, tiny_llama_dir, log=lambda m: None)
    assert a.id == b.id and len(store.list()) == 1
    with pytest.raises(KogataError, match="already used"):
        import_local(store, tiny_gemma3_dir, name="one", log=lambda m: None)
    assert len(store.list()) == 1


def test_failed_write_leaves_nothing(kogata_home):
    store = Store()
    with pytest.raises(RuntimeError):
        with store.stage() as st:
            (st.dir / "model.safetensors").write_bytes(b"half")
            raise RuntimeError("disk full")
    assert store.list() == []
    assert list(store.tmp_dir.iterdir()) == []


def test_stale_staging_from_dead_process_is_cleaned(kogata_home):
    store = Store()
    stale = store.tmp_dir / "stage-999999-deadbeef"
    stale.mkdir()
    (stale / "x").write_text("partial")
    Store()
    assert not stale.exists()


def test_lineage_accumulates_and_parent_is_recorded(kogata_home, tiny_llama_dir):
    store = Store()
    base = import_local(store, tiny_llama_dir, name="base", log=lambda m: None)
    with store.stage() as st:
        (st.dir / "weights.bin.txt").write_bytes(b"x")
        child = st.commit(format="hf", name="child", parent=base, step=LineageStep(method="noop", config={"k": 1}), params=1)
    assert child.parent == base.id
    assert [s["method"] for s in child.lineage] == ["import", "noop"]
    assert store.children(base.id)[0].id == child.id


def test_tampering_is_detected(kogata_home, tiny_llama_dir):
    store = Store()
    art = import_local(store, tiny_llama_dir, name="t", log=lambda m: None)
    target = art.path / "model.safetensors"
    os.chmod(target, 0o644)
    with open(target, "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02")
    problems = art.verify()
    assert problems and "model.safetensors" in problems[0]


def test_unwritable_home_is_a_user_error(tmp_path, monkeypatch):
    if os.geteuid() == 0:
        # root ignores permission bits: use a path below a regular file instead
        blocker = tmp_path / "file"
        blocker.write_text("")
        home = blocker / "home"
    else:
        home = tmp_path / "ro"
        home.mkdir()
        os.chmod(home, 0o500)
    monkeypatch.setenv("KOGATA_HOME", str(home))
    with pytest.raises(KogataError, match="not writable"):
        Store()
