"""``trim-vocab`` on the real tokenizers: SmolLM2 (byte-level BPE) and Gemma-3 (SentencePiece-style BPE, byte fallback).

Set KOGATA_TEST_HOME to reuse pulled models between runs. The Gemma cases are marked ``slow`` (pull 2–7 min once,
trim ~45 s, tokenizer loads ~10 s each on 2 cores): deselect them with ``-m "not slow"`` or KOGATA_SKIP_GEMMA=1.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
import torch

import kogata
import kogata.methods.trim_vocab.tokenizer as vt
from kogata.artifacts.store import Store
from kogata.methods.registry import MethodContext, apply_method

pytestmark = pytest.mark.integration

SUITES = Path(kogata.__file__).parent / "suites"
FALLBACK = {  # used only while the sample suites lack their documents
    "ja_train": "さくら電機のお客様サポートです。冷蔵庫の保証期間はご購入日から1年間です。\n\n"
    "配送には通常3日から5日かかります。返品はお届けから30日以内であれば承ります。\n",
    "ja_heldout": "エアコンのフィルターは二週間に一度掃除してください。異音がする場合は運転を止めてご連絡ください。\n",
}
SETTINGS = {
    "smollm2": {"keep": ["hiragana", "katakana"]},
    "gemma3": {"keep": ["hiragana", "katakana", "cjk-common", "ascii"]},
}


def _doc(lang: str, part: str, tmp: Path) -> Path:
    path = SUITES / f"support-desk-{lang}" / f"docs_{part}.txt"
    if path.is_file() and path.stat().st_size > 0:
        return path
    out = tmp / f"{lang}_{part}.txt"
    out.write_text(FALLBACK[f"{lang}_{part}"], encoding="utf-8")
    return out


@pytest.fixture(scope="session")
def docs(tmp_path_factory) -> dict[str, list[Path]]:
    tmp = tmp_path_factory.mktemp("trim-docs")
    return {part: [_doc("en", part, tmp), _doc("ja", part, tmp)] for part in ("train", "heldout")}


@pytest.fixture(scope="session")
def gemma3(real_home):
    if os.environ.get("KOGATA_SKIP_GEMMA"):
        pytest.skip("KOGATA_SKIP_GEMMA is set")
    from kogata.artifacts.importer import pull

    return pull(Store(), "gemma3-270m", log=lambda m: None)


@pytest.fixture(scope="module", params=["smollm2", pytest.param("gemma3", marks=pytest.mark.slow)])
def trimmed(request, docs):
    from transformers import AutoTokenizer

    parent = request.getfixturevalue(request.param)
    values = dict(SETTINGS[request.param], heldout=[str(p) for p in docs["heldout"]])
    ctx = MethodContext(store=Store(), data=docs["train"], log=lambda m: None)
    out = apply_method(parent, "trim-vocab", values, ctx)
    kept = json.loads((out.path / "vocab_map.json").read_text())["new_to_old"]
    return {
        "name": request.param, "parent": parent, "out": out, "kept": kept,
        "t0": AutoTokenizer.from_pretrained(parent.path), "t1": AutoTokenizer.from_pretrained(out.path),
    }


def _texts(paths: list[Path]) -> list[str]:
    return [line for p in paths for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def _windows(texts: list[str], n: int, seed: int = 0) -> list[str]:
    """Random sub-strings: they start and end mid-word, where a broken merge closure shows first."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        t = rng.choice(texts)
        a = rng.randrange(len(t))
        out.append(t[a : a + rng.randint(1, 60)])
    return out


def test_covered_text_tokenises_identically(trimmed, docs):
    t0, t1, kept = trimmed["t0"], trimmed["t1"], trimmed["kept"]
    kept_set = set(kept)
    lines = _texts(docs["train"])
    held = _texts(docs["heldout"])
    checked = differ = 0
    for text in lines + _windows(lines, 400) + held + _windows(held, 200, seed=1):
        a = t0(text, add_special_tokens=False)["input_ids"]
        if not set(a) <= kept_set:
            continue
        checked += 1
        differ += [kept[i] for i in t1(text, add_special_tokens=False)["input_ids"]] != a
    assert differ == 0 and checked >= len(lines) + 400  # every corpus line and window is covered


def test_kept_set_is_closed_under_merges(trimmed):
    v = vt.read_bpe(trimmed["parent"].path / "tokenizer.json")
    assert v.kind == {"smollm2": vt.BYTE_LEVEL, "gemma3": vt.BYTE_FALLBACK}[trimmed["name"]]
    assert vt.closure(v, trimmed["kept"]) == set(trimmed["kept"])
    assert v.byte_ids <= set(trimmed["kept"])


def test_without_closure_real_text_is_cut_differently(trimmed, docs):
    """The negative control: keep only the corpus ids (no merge parents) and covered text changes segmentation."""
    from tokenizers import Tokenizer

    v = vt.read_bpe(trimmed["parent"].path / "tokenizer.json")
    raw = Tokenizer.from_str(json.dumps(v.data))
    lines = _texts(docs["train"])
    seen = {i for line in lines for i in raw.encode(line, add_special_tokens=False).ids}
    kept = sorted(seen | v.byte_ids | v.added_ids)
    broken = Tokenizer.from_str(json.dumps(vt.trimmed_json(v, kept)))
    differ = sum([kept[i] for i in broken.encode(t, add_special_tokens=False).ids] != raw.encode(t, add_special_tokens=False).ids for t in lines)
    assert differ > 0


def test_special_tokens_and_chat_template_survive(trimmed, docs):
    t0, t1, kept = trimmed["t0"], trimmed["t1"], trimmed["kept"]
    first = _texts(docs["train"])[0]
    for name in ("bos_token", "eos_token", "pad_token", "unk_token"):
        if getattr(t0, name) is not None:
            assert getattr(t1, name) == getattr(t0, name)
            assert kept[getattr(t1, f"{name}_id")] == getattr(t0, f"{name}_id")
    assert [kept[i] for i in t1(first)["input_ids"]] == t0(first)["input_ids"]  # with BOS where the post-processor adds one
    specials = [t for t in t0.all_special_tokens if not t.startswith("<unused")]
    assert set(specials) <= set(t1.all_special_tokens)
    if t0.chat_template:
        msgs = [{"role": "user", "content": "保証期間は何年ですか?"}]
        a = t0.apply_chat_template(msgs, add_generation_prompt=True, return_dict=True)["input_ids"]
        b = t1.apply_chat_template(msgs, add_generation_prompt=True, return_dict=True)["input_ids"]
        assert [kept[i] for i in b] == a


def test_logits_of_kept_ids_and_generation(trimmed):
    from transformers import AutoModelForCausalLM

    t0, t1, kept = trimmed["t0"], trimmed["t1"], trimmed["kept"]
    m0 = AutoModelForCausalLM.from_pretrained(trimmed["parent"].path, dtype=torch.float32).eval()
    m1 = AutoModelForCausalLM.from_pretrained(trimmed["out"].path, dtype=torch.float32).eval()
    text = "The warranty covers 1 year. 保証期間は1年間です。"
    ids0 = t0(text, return_tensors="pt")["input_ids"]
    ids1 = t1(text, return_tensors="pt")["input_ids"]
    assert [kept[i] for i in ids1[0].tolist()] == ids0[0].tolist()
    with torch.no_grad():
        l0, l1 = m0(ids0).logits[0], m1(ids1).logits[0]
        assert torch.allclose(l0[:, torch.tensor(kept)], l1, atol=1e-6, rtol=0)  # measured: bitwise equal
        del m0, l0
        gen = m1.generate(ids1, max_new_tokens=12, do_sample=False, pad_token_id=t1.pad_token_id)
    new = gen[0, ids1.shape[1]:].tolist()
    assert new and max(new) < len(kept)
    text_out = t1.decode(new, skip_special_tokens=True)
    assert max(t1(text_out, add_special_tokens=False)["input_ids"], default=0) < len(kept)


def test_reported_figures(trimmed):
    m = trimmed["out"].lineage[-1]["metrics"]
    assert m["corpus_token_coverage"] == 1.0 and m["corpus_docs_covered"] == m["corpus_docs"]
    assert m["vocab_after"] == len(trimmed["kept"]) < m["vocab_before"]
    assert m["params_after"] == trimmed["out"].params < m["params_before"]
    assert 0 < m["heldout"]["segmentation_kept"] <= m["heldout"]["ids_kept"] <= 1
    assert 0 <= m["dropped_mass_mean"] <= 1
    if trimmed["name"] == "gemma3":
        assert m["vocab_before"] == 262144 and m["params_reduction"] >= 0.5
    else:
        assert m["vocab_before"] == 49152 and m["params_reduction"] > 0.15
    print(f"\n{trimmed['name']}: " + json.dumps({k: v for k, v in m.items() if k not in ("cut_by_class", "kept_by_class")}, ensure_ascii=False))
