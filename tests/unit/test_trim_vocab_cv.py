"""Cross-validated ``trim-vocab`` (``heldout_target``): the held-out cost computed without building a model is the
built model's, a looser target keeps fewer tokens, the lineage records the search, bad values are refused."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import kogata.methods.trim_vocab.crossval as cv
import kogata.methods.trim_vocab.tokenizer as vt
import tests.unit.test_trim_vocab as base
from kogata.core.errors import KogataError
from kogata.methods.registry import build_config, get_method
from tests.unit.test_trim_vocab import EN, JA, TRAIN, _corpus, _tok, _trim

# the tiny trim-vocab models of test_trim_vocab.py (a byte-level llama and two byte-fallback gemma3s)
byte_level_dir, byte_fallback_dir, model_dir = base.byte_level_dir, base.byte_fallback_dir, base.model_dir

HELD = ["The warranty covers parts and labour for one year, and shipping is free.",
        "保証は一年間です。サポート窓口にお問い合わせください。", "Please try again after restarting the app."]


def _docs(tmp_path: Path, texts: list[str]) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir(exist_ok=True)
    for i, t in enumerate(texts):
        (folder / f"{i:02d}.txt").write_text(t, encoding="utf-8")
    return folder


def _built_nll(folder: Path, texts: list[str], prefix_new: list[int]) -> float:
    """NLL of ``texts`` under an actually built (trimmed or not) model with its own tokenizer: full logits."""
    from transformers import AutoModelForCausalLM

    tok = _tok(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    total = 0.0
    with torch.no_grad():
        for t in texts:
            ids = torch.tensor([prefix_new + tok(t, add_special_tokens=False)["input_ids"]])
            lp = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
            total -= float(lp.gather(1, ids[0, 1:, None]).sum())
    return total


def test_ratio_without_building_equals_the_built_model(model_dir, kogata_home, tmp_path):
    _, out = _trim(kogata_home, model_dir, [_corpus(tmp_path, EN + JA)], mass_tokens=0)
    kept = json.loads((out.path / "vocab_map.json").read_text())["new_to_old"]
    tok = _tok(model_dir)
    v = vt.read_bpe(model_dir / "tokenizer.json")
    prefix = cv.prefix_ids(tok.backend_tokenizer, tok)
    texts = cv.segments(tok.backend_tokenizer, HELD, 4096)
    assert texts == HELD  # short documents are not cut
    scorer = cv.Scorer(model_dir)
    ref = scorer.nll([prefix + tok.backend_tokenizer.encode(t, add_special_tokens=False).ids for t in texts])
    trimmed = cv.heldout_nll(scorer, v, kept, texts, prefix)
    new_of = {o: n for n, o in enumerate(kept)}
    built_ref = _built_nll(model_dir, texts, prefix)
    built_trim = _built_nll(out.path, texts, [new_of[i] for i in prefix])
    assert ref == pytest.approx(built_ref, rel=1e-5) and trimmed == pytest.approx(built_trim, rel=1e-5)
    assert trimmed / ref == pytest.approx(built_trim / built_ref, abs=1e-4)
    assert trimmed / ref > 1.0  # held-out text is not covered: the trimmed model pays for it
    cv.CHUNK_ELEMENTS, old = 7 * len(kept), cv.CHUNK_ELEMENTS  # many small chunks give the same sum
    try:
        assert cv.heldout_nll(scorer, v, kept, texts, prefix) == pytest.approx(trimmed, rel=1e-9)
    finally:
        cv.CHUNK_ELEMENTS = old


def test_split_is_deterministic_and_order_free():
    docs = [f"document number {i}\n\nsecond paragraph {i}" for i in range(20)]
    fit, held = cv.split_documents(docs, 0.2)
    assert len(held) == 4 and len(fit) == 16 and not set(fit) & set(held)
    fit2, held2 = cv.split_documents(list(reversed(docs)), 0.2)
    assert set(held2) == set(held) and set(fit2) == set(fit)
    fit3, held3 = cv.split_documents(["one\n\ntwo\n\nthree"], 0.2)  # few documents: split at blank lines
    assert len(fit3) == 2 and len(held3) == 1
    with pytest.raises(KogataError, match="at least 2 different documents"):
        cv.split_documents(["same", "same"], 0.2)


def _steps(out) -> dict:
    return out.lineage[-1]["metrics"]


def _fresh(monkeypatch, tmp_path: Path, name: str, folder: Path, data: list[Path], **values):
    """Trim in a store of its own (a store keeps the first manifest of identical bytes)."""
    monkeypatch.setenv("KOGATA_HOME", str(tmp_path / name))
    return _trim(tmp_path / name, folder, data, **values)[1]


def test_looser_target_keeps_fewer_tokens_and_lineage_is_consistent(byte_fallback_dir, monkeypatch, tmp_path):
    texts = list(dict.fromkeys(TRAIN + EN + JA + HELD))
    docs = [_docs(tmp_path, texts)]
    blind = _fresh(monkeypatch, tmp_path, "blind", byte_fallback_dir, docs, mass_tokens=0)
    strict = _fresh(monkeypatch, tmp_path, "strict", byte_fallback_dir, docs, mass_tokens=0, heldout_target=1.0001, cv_fraction=0.3)
    loose = _fresh(monkeypatch, tmp_path, "loose", byte_fallback_dir, docs, mass_tokens=0, heldout_target=5.0, cv_fraction=0.3)
    n_blind, n_strict, n_loose = (_steps(a)["vocab_after"] for a in (blind, strict, loose))
    assert n_loose < n_strict and n_loose < n_blind
    for art in (strict, loose):
        m = _steps(art)
        c = m["crossval"]
        assert m["heldout_bpb_ratio"] == c["heldout_bpb_ratio"] and c["target"] == art.lineage[-1]["config"]["heldout_target"]
        assert c["fit_docs"] + c["heldout_docs"] == len(texts) and c["heldout_docs"] == round(0.3 * len(texts))
        assert c["heldout_tokens"] > 0 and c["heldout_bytes"] >= c["heldout_tokens"] // 4 and c["heldout_bpb_reference"] > 0
        assert c["tried"] and all(t["kept"] > 0 and t["ratio"] > 0 for t in c["tried"])
        assert c["met"] == (c["heldout_bpb_ratio"] <= c["target"])
        assert c["heldout_bpb_ratio"] in [t["ratio"] for t in c["tried"]]
    lc = _steps(loose)["crossval"]
    assert lc["met"] and lc["corpus_tokens_kept"] != "all" and lc["corpus_tokens_kept"] < lc["fit_distinct_tokens"]
    first = lc["tried"][0]  # every fit token is tried first; the chosen point is smaller
    assert first["fit_tokens"] == lc["fit_distinct_tokens"] and min(t["kept"] for t in lc["tried"]) < first["kept"]
    sc = _steps(strict)["crossval"]  # unreachable for a random model: keep-lists were tried, the largest set is kept
    assert not sc["met"] and [t["fit_tokens"] for t in sc["tried"]] == [sc["fit_distinct_tokens"], "all+keep≤1", "all+keep≤2"]
    assert n_strict >= n_blind and not math.isinf(sc["heldout_bpb_ratio"]) and sc["keep_max_chars"] == 2
    assert sc["tried"][0]["ratio"] > sc["tried"][-1]["ratio"] == sc["heldout_bpb_ratio"]  # character coverage helps


def test_segments_are_capped_and_cut_at_token_starts():
    from tests.tiny_models import CORPUS, make_tokenizer

    backend = make_tokenizer().backend_tokenizer
    docs = [" ".join(CORPUS)] * 3
    cv.SEGMENT_TOKENS, old = 16, cv.SEGMENT_TOKENS
    try:
        pieces = cv.segments(backend, docs, 40)
    finally:
        cv.SEGMENT_TOKENS = old
    assert len(pieces) == 3 and "".join(pieces) == docs[0][: len("".join(pieces))]
    assert sum(len(backend.encode(p, add_special_tokens=False).ids) for p in pieces) in range(36, 45)


def test_unmet_target_is_not_an_error(byte_level_dir, kogata_home, tmp_path):
    logs: list[str] = []
    from kogata.artifacts.importer import import_local
    from kogata.artifacts.store import Store
    from kogata.methods.registry import MethodContext, apply_method

    store = Store()
    parent = import_local(store, byte_level_dir, name="src", log=lambda m: None)
    ctx = MethodContext(store=store, data=[_docs(tmp_path, EN + HELD + ["Our support desk answers quickly."])], log=logs.append, allow_reuse=False)
    out = apply_method(parent, "trim-vocab", {"heldout_target": 1.0, "mass_tokens": 0, "cv_fraction": 0.5}, ctx)
    c = _steps(out)["crossval"]
    assert c["met"] is False and c["heldout_bpb_ratio"] > 1.0 and c["corpus_tokens_kept"] == "all"
    assert any("misses heldout_target" in line for line in logs)


@pytest.mark.parametrize("values, field", [({"heldout_target": "0.9"}, "heldout_target"), ({"heldout_target": "abc"}, "heldout_target"),
                                           ({"cv_fraction": "0"}, "cv_fraction"), ({"cv_fraction": "0.9"}, "cv_fraction"),
                                           ({"cv_max_tokens": "10"}, "cv_max_tokens")])
def test_bad_cv_config_is_refused(values, field):
    with pytest.raises(KogataError) as err:
        build_config(get_method("trim-vocab"), values)
    assert field in err.value.message and err.value.hint and "\n" not in str(err.value)
    assert build_config(get_method("trim-vocab"), {"heldout_target": "1.01"}).heldout_target == 1.01
    assert build_config(get_method("trim-vocab"), {"heldout_target": "none"}).heldout_target is None


def test_optimize_candidate_uses_a_heldout_target():
    from kogata.methods.search_space import SpaceContext
    from kogata.methods.trim_vocab.method import SEARCH_HELDOUT_TARGET, TRIM_VOCAB_SPACE

    ctx = SpaceContext(base="m", target_format="gguf", have_data=True)
    assert TRIM_VOCAB_SPACE.values({"enabled": "auto"}, ctx) == [{"heldout_target": SEARCH_HELDOUT_TARGET}]
    assert TRIM_VOCAB_SPACE.values({"enabled": True, "heldout_target": 1.05}, ctx) == [{"heldout_target": 1.05}]
    assert TRIM_VOCAB_SPACE.values({"enabled": True, "heldout_target": None}, ctx) == [{"heldout_target": None}]
    assert TRIM_VOCAB_SPACE.values({"enabled": "auto"}, SpaceContext(base="m", target_format="gguf")) == []
    assert "heldout_target" in TRIM_VOCAB_SPACE.help
    with pytest.raises(KogataError, match="heldout_target"):
        TRIM_VOCAB_SPACE.check({"enabled": True, "heldout_target": 0.5}, ctx)
