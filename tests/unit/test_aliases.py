"""`kogata models alias set | show | history | rollback` on a store with two artifacts."""

from __future__ import annotations

import json

import pytest

from tests.cli_helpers import run_cli


@pytest.fixture()
def home(tmp_path, tiny_llama_gguf, tiny_gemma3_gguf, monkeypatch):
    from kogata.artifacts.importer import import_path
    from kogata.artifacts.store import Store

    home = tmp_path / "home"
    store = Store(home)
    import_path(store, str(tiny_llama_gguf), name="tiny", log=lambda m: None)
    import_path(store, str(tiny_gemma3_gguf), name="tiny-b", log=lambda m: None)
    monkeypatch.setenv("KOGATA_HOME", str(home))
    return store


def test_set_show_history_rollback(home, capsys, monkeypatch):
    a, b = home.get("tiny").id, home.get("tiny-b").id
    assert run_cli(capsys, monkeypatch, "models", "alias", "set", "production", "tiny", "--reason", "first")[0] == 0
    assert run_cli(capsys, monkeypatch, "models", "alias", "set", "production", "tiny-b", "--reason", "better F1")[0] == 0
    code, out, _ = run_cli(capsys, monkeypatch, "models", "alias", "show", "--json")
    assert code == 0 and json.loads(out)["production"]["artifact_id"] == b
    code, out, err = run_cli(capsys, monkeypatch, "models", "alias", "rollback", "production")
    assert code == 0, err
    code, out, _ = run_cli(capsys, monkeypatch, "models", "alias", "history", "production", "--json")
    hist = json.loads(out)
    assert [(h["previous_id"], h["artifact_id"]) for h in hist] == [(None, a), (a, b), (b, a)]
    assert hist[1]["reason"] == "better F1" and hist[2]["reason"].startswith("rollback")
    code, _, err = run_cli(capsys, monkeypatch, "models", "alias", "rollback", "nope")
    assert code == 2 and "does not exist" in err
    code, _, err = run_cli(capsys, monkeypatch, "models", "alias", "set", "candidate", "missing-artifact")
    assert code == 2
