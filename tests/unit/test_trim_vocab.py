"""``trim-vocab`` on tiny models: exact tokenisation and logits on covered text, merge closure, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import kogata.methods.trim_vocab.tokenizer as vt
from kogata.artifacts.importer import import_local
from kogata.artifacts.store import Store
from kogata.core.errors import KogataError
from kogata.methods.registry import MethodContext, apply_method, build_config, get_method
from tests.tiny_models import CHAT_TEMPLATE, CORPUS

EN = ["Hello, how can I help you today?", "Please restart the SakuraHome app and try again.", "Shipping takes three to five business days."]
JA = ["お問い合わせありがとうございます。", "アプリを再起動してください。"]
TRAIN = CORPUS + [
    "The warranty covers parts and labour for one year.",
    "Our support desk answers within two business days.",
    "保証は一年間、部品と工賃を含みます。",
    "サポート窓口は二営業日以内にお答えします。",
]
GEMMA_TEMPLATE = (
    "{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


# ---- fixtures: a byte-level BPE (untied llama) and a SentencePiece-style BPE with byte fallback (gemma3) ----------
def _byte_level_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(TRAIN * 3, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _byte_fallback_tokenizer():
    """Gemma-like: ``▁`` for spaces, no pre-tokenizer, ``<0x00>``…``<0xFF>`` in the vocabulary, a BOS template."""
    from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<unused0>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]  # <unused0> is dropped
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    trainer = trainers.BpeTrainer(vocab_size=650, special_tokens=specials + byte_tokens, show_progress=False)
    tok.train_from_iterator(TRAIN * 3, trainer)
    data = json.loads(tok.to_str())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] in specials]  # bytes are plain vocab
    data["decoder"] = json.loads(decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]).__getstate__())
    tok = Tokenizer.from_str(json.dumps(data))
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", 3)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>", pad_token="<pad>")
    fast.chat_template = GEMMA_TEMPLATE
    return fast


def _save_tiny(folder: Path, tok, arch: str, tie: bool) -> Path:
    from transformers import AutoModelForCausalLM, Gemma3TextConfig, LlamaConfig

    common = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=16, max_position_embeddings=256, bos_token_id=tok.bos_token_id,
                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=tie)
    if arch == "llama":
        cfg = LlamaConfig(**common)
    else:
        cfg = Gemma3TextConfig(**common, sliding_window=8, layer_types=["sliding_attention", "full_attention"], query_pre_attn_scalar=16)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    model.generation_config.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def byte_level_dir(tmp_path_factory) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("bl"), _byte_level_tokenizer(), "llama", tie=False)


@pytest.fixture(scope="session")
def byte_fallback_dir(tmp_path_factory) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("bf"), _byte_fallback_tokenizer(), "gemma3", tie=True)


@pytest.fixture(scope="session", params=["byte-level-llama", "byte-fallback-gemma3", "conftest-gemma3"])
def model_dir(request, byte_level_dir, byte_fallback_dir, tiny_gemma3_dir) -> Path:
    return {"byte-level-llama": byte_level_dir, "byte-fallback-gemma3": byte_fallback_dir, "conftest-gemma3": tiny_gemma3_dir}[request.param]


def _corpus(tmp_path: Path, lines: list[str], name: str = "corpus.txt") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _trim(kogata_home: Path, folder: Path, data: list[Path], **values):
    store = Store()
    parent = store.find("src") or import_local(store, folder, name="src", log=lambda m: None)
    ctx = MethodContext(store=store, data=data, log=lambda m: None, allow_reuse=False)
    return parent, apply_method(parent, "trim-vocab", values, ctx)


def _tok(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


# ---- the method, end to end -----------------------------------------------------------------------------------
def test_trim_is_exact_on_covered_text(model_dir, kogata_home, tmp_path):
    from transformers import AutoModelForCausalLM

    parent, out = _trim(kogata_home, model_dir, [_corpus(tmp_path, EN + JA)], mass_tokens=32)
    vmap = json.loads((out.path / "vocab_map.json").read_text())["new_to_old"]
    cfg = json.loads((out.path / "config.json").read_text())
    assert vmap == sorted(vmap) and cfg["vocab_size"] == len(vmap) < json.loads((model_dir / "config.json").read_text())["vocab_size"]
    assert out.verify() == [] and out.parent == parent.id and out.format == "hf"

    t0, t1 = _tok(model_dir), _tok(out.path)
    covered = EN + JA + [" ".join(EN), "".join(JA), "\n".join(EN + JA), EN[0][:7], JA[1][2:6]]
    for text in covered:
        a = _ids(t0, text)
        assert all(i in set(vmap) for i in a), text  # sub-strings of the corpus stay covered here
        assert [vmap[i] for i in _ids(t1, text)] == a, text
        assert t1.convert_ids_to_tokens(_ids(t1, text)) == t0.convert_ids_to_tokens(a)
    full0, full1 = t0(EN[0])["input_ids"], t1(EN[0])["input_ids"]  # with the post-processor's BOS where there is one
    assert [vmap[i] for i in full1] == full0
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        assert vmap[cfg[name]] == json.loads((model_dir / "config.json").read_text())[name]

    m0 = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    m1 = AutoModelForCausalLM.from_pretrained(out.path, dtype=torch.float32).eval()
    ids0 = torch.tensor([t0(" ".join(EN + JA))["input_ids"]])
    ids1 = torch.tensor([t1(" ".join(EN + JA))["input_ids"]])
    with torch.no_grad():
        l0, l1 = m0(ids0).logits[0], m1(ids1).logits[0]
    kept = torch.tensor(vmap)
    assert torch.allclose(l0[:, kept], l1, atol=1e-6, rtol=0)  # same logits for every kept id (bitwise here)
    lp0, lp1 = torch.log_softmax(l0, -1), torch.log_softmax(l1, -1)
    renorm = lp0[:, kept] - torch.logsumexp(lp0[:, kept], -1, keepdim=True)
    assert torch.allclose(renorm, lp1, atol=1e-5)  # probabilities renormalise over the kept vocabulary
    target = ids1[0, 1:]
    ll0 = lp0[:-1].gather(1, ids0[0, 1:, None]).sum()
    ll1 = lp1[:-1].gather(1, target[:, None]).sum()
    dropped_mass = 1 - lp0[:-1, kept].exp().sum(-1)
    assert torch.allclose(ll1, ll0 - torch.log1p(-dropped_mass).sum(), atol=1e-4)

    m = out.lineage[-1]["metrics"]
    assert m["vocab_before"] > m["vocab_after"] == len(vmap)
    assert m["params_before"] > m["params_after"] == out.params
    assert m["corpus_token_coverage"] == 1.0 and m["corpus_docs_covered"] == m["corpus_docs"] == 1
    assert sum(m["cut_by_class"].values()) == m["vocab_before"] - m["vocab_after"]
    assert 0 <= m["dropped_mass_mean"] <= m["dropped_mass_max"] <= 1


def test_generation_stays_inside_the_kept_vocabulary(byte_fallback_dir, kogata_home, tmp_path):
    from transformers import AutoModelForCausalLM

    _, out = _trim(kogata_home, byte_fallback_dir, [_corpus(tmp_path, EN + JA)], mass_tokens=0)
    tok, model = _tok(out.path), AutoModelForCausalLM.from_pretrained(out.path, dtype=torch.float32).eval()
    k = json.loads((out.path / "config.json").read_text())["vocab_size"]
    prompt = tok.apply_chat_template([{"role": "user", "content": JA[0]}], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    torch.manual_seed(0)
    with torch.no_grad():
        gen = model.generate(**prompt, max_new_tokens=24, do_sample=True, top_k=0, pad_token_id=tok.pad_token_id)
    new = gen[0, prompt["input_ids"].shape[1]:].tolist()
    assert new and max(new) < k and model.get_input_embeddings().weight.shape[0] == k
    text = tok.decode(new, skip_special_tokens=True)
    again = _ids(tok, text)
    assert max(again, default=0) < k and tok.decode(again) == text  # re-tokenises within the kept vocabulary


def test_chat_template_and_runtime_loading(kogata_home, tmp_path, tiny_llama_dir):
    from kogata.artifacts.load import load_torch

    _, out = _trim(kogata_home, tiny_llama_dir, [_corpus(tmp_path, EN)], mass_tokens=0)
    t0 = _tok(tiny_llama_dir)
    model, t1 = load_torch(out)  # the torch runtime path: AutoModelForCausalLM + AutoTokenizer on a plain HF folder
    vmap = json.loads((out.path / "vocab_map.json").read_text())["new_to_old"]
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": EN[0]}]
    r0 = t0.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert t1.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False) == r0
    ids1 = t1.apply_chat_template(msgs, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert [vmap[i] for i in ids1] == t0.apply_chat_template(msgs, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert model.config.vocab_size == len(vmap) and t1.eos_token == "<|im_end|>" and vmap[t1.eos_token_id] == t0.eos_token_id


def test_keep_lists_keep_characters_of_unseen_text(byte_fallback_dir, kogata_home, tmp_path):
    _, out = _trim(kogata_home, byte_fallback_dir, [_corpus(tmp_path, EN)], keep=["hiragana", "katakana", "cjk-common"], mass_tokens=0)
    v = vt.read_bpe(byte_fallback_dir / "tokenizer.json")
    kept = set(json.loads((out.path / "vocab_map.json").read_text())["new_to_old"])
    singles = [i for tok, i in v.ids.items() if len(tok) == 1 and vt.in_classes(tok, ["hiragana", "katakana", "cjk-common"], 1)]
    assert singles and all(i in kept for i in singles)
    assert not any(i in kept for tok, i in v.ids.items() if len(tok) > 2 and all("\u3040" <= c <= "\u30ff" for c in tok))
    t1 = _tok(out.path)
    classes = ["hiragana", "katakana", "cjk-common"]
    for text in JA:  # unseen: spelled character by character instead of by bytes
        toks = t1.convert_ids_to_tokens(_ids(t1, text))
        assert t1.decode(_ids(t1, text)) == text
        spelled = [c for c in text if c in v.ids and vt.in_classes(c, classes, 1)]
        assert spelled and all(c in toks for c in spelled)
    reasons = out.lineage[-1]["metrics"]["kept_by_reason"]
    assert reasons["keep_lists"] > 0


def test_max_vocab_min_count_and_extra_tokens(byte_level_dir, kogata_home, tmp_path):
    v = vt.read_bpe(byte_level_dir / "tokenizer.json")
    data = [_corpus(tmp_path, EN * 2 + JA)]
    _, full = _trim(kogata_home, byte_level_dir, data, mass_tokens=0)
    n_full = full.lineage[-1]["metrics"]["vocab_after"]
    _, small = _trim(kogata_home, byte_level_dir, data, max_vocab=n_full - 10, extra_tokens=["warranty"], mass_tokens=0)
    kept = json.loads((small.path / "vocab_map.json").read_text())["new_to_old"]
    assert len(kept) <= n_full - 10 and small.lineage[-1]["metrics"]["skipped_for_max_vocab"] > 0
    assert vt.closure(v, kept) == set(kept)  # still closed under merges
    t0 = _tok(byte_level_dir)
    assert set(_ids(t0, "warranty")) <= set(kept)
    counted = small.lineage[-1]["metrics"]
    assert counted["corpus_token_coverage"] < 1.0 and counted["kept_by_reason"]["extra_tokens"] > 0
    _, frequent = _trim(kogata_home, byte_level_dir, data, min_count=2, mass_tokens=0)
    kept2 = set(json.loads((frequent.path / "vocab_map.json").read_text())["new_to_old"])
    assert set(_ids(t0, EN[0])) <= kept2  # seen twice
    with pytest.raises(KogataError, match="max_vocab"):
        _trim(kogata_home, byte_level_dir, data, max_vocab=100, mass_tokens=0)


def test_heldout_coverage_is_reported(byte_fallback_dir, kogata_home, tmp_path):
    held = _corpus(tmp_path, ["The warranty covers parts and labour for one year.", "保証は一年間です。"], "held.txt")
    _, out = _trim(kogata_home, byte_fallback_dir, [_corpus(tmp_path, EN)], heldout=[str(held)], mass_tokens=0)
    h = out.lineage[-1]["metrics"]["heldout"]
    assert h["tokens"] > 0 and 0 < h["segmentation_kept"] <= h["ids_kept"] < 1.0


# ---- merge closure, on a tokenizer small enough to read --------------------------------------------------------
def _toy_bpe(tmp_path: Path) -> Path:
    from tokenizers import Tokenizer, models

    vocab = {c: i for i, c in enumerate(["<0x00>", "a", "b", "c", "ab", "bc", "abc", "ca"])}
    merges = [("a", "b"), ("b", "c"), ("ab", "c")]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=True))
    path = tmp_path / "toy.json"
    tok.save(str(path))
    return path


def test_derivation_and_closure(tmp_path):
    from tokenizers import Tokenizer

    v = vt.read_bpe(_toy_bpe(tmp_path))
    assert v.kind == vt.BYTE_FALLBACK and v.byte_ids == {0}
    assert vt.derivation(v, "abc") == ["a", "b", "c", "ab", "abc"]
    assert vt.derivation(v, "ca") is None  # no merge builds it: BPE never produces it
    assert vt.closure(v, [v.ids["abc"]]) == {v.ids[t] for t in ("a", "b", "c", "ab", "abc")}
    kept = sorted(vt.closure(v, [0, v.ids["abc"]]))
    trimmed = Tokenizer.from_str(json.dumps(vt.trimmed_json(v, kept)))
    assert trimmed.encode("abc").tokens == ["abc"]
    # without closure ("ab" dropped, "bc" kept) the same text is cut differently: the reason closure is needed
    broken = sorted({0, v.ids["a"], v.ids["b"], v.ids["c"], v.ids["bc"], v.ids["abc"]})
    assert Tokenizer.from_str(json.dumps(vt.trimmed_json(v, broken))).encode("abc").tokens == ["a", "bc"]


def test_slice_keeps_rows_of_any_dtype(tmp_path):
    import numpy as np
    from safetensors.torch import load_file, save_file

    from kogata.methods.trim_vocab.writer import slice_safetensors

    emb = torch.randn(10, 4).to(torch.bfloat16)
    save_file({"model.embed_tokens.weight": emb, "model.norm.weight": torch.ones(4), "lm_head.weight": emb.float()}, tmp_path / "a.safetensors", metadata={"format": "pt"})
    kept = np.array([0, 3, 7])
    size, n = slice_safetensors(tmp_path / "a.safetensors", tmp_path / "b.safetensors", kept, 10)
    out = load_file(tmp_path / "b.safetensors")
    assert n == 2 and torch.equal(out["model.embed_tokens.weight"], emb[kept]) and torch.equal(out["lm_head.weight"], emb.float()[kept])
    assert torch.equal(out["model.norm.weight"], torch.ones(4)) and size == 3 * 4 * 2 + 4 * 4 + 3 * 4 * 4


def test_corpus_reading(tmp_path):
    from kogata.methods._shared.texts import read_texts

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.md").write_text("# Title\n\ntext", encoding="utf-8")
    (tmp_path / "d" / "b.jsonl").write_text('{"q": "質問", "a": {"text": "答え", "tags": ["x", 1]}}\n\n', encoding="utf-8")
    assert read_texts([tmp_path / "d"]) == ["# Title\n\ntext", "質問", "答え", "x"]
    (tmp_path / "bad.jsonl").write_text('{"q": 1}\n{oops\n', encoding="utf-8")
    with pytest.raises(KogataError, match=r"bad.jsonl:2"):
        read_texts([tmp_path / "bad.jsonl"])


# ---- bad input: one-line errors, no artifact ------------------------------------------------------------------
def test_bad_config_is_refused():
    spec = get_method("trim-vocab")
    with pytest.raises(KogataError) as err:
        build_config(spec, {"keep": "hiragana,klingon"})
    assert "klingon" in err.value.message and "cjk-common" in err.value.hint and "\n" not in str(err.value)
    with pytest.raises(KogataError, match="min_count"):
        build_config(spec, {"min_count": "0"})
    assert build_config(spec, {"keep": "hiragana,ascii", "max_vocab": "none"}).keep == ["hiragana", "ascii"]


@pytest.mark.parametrize("lines, match", [(["   ", ""], "empty"), (["<|im_end|><|im_start|>"], "no tokens beyond")])
def test_empty_or_pointless_corpus(kogata_home, tmp_path, tiny_llama_dir, lines, match):
    with pytest.raises(KogataError, match=match) as err:
        _trim(kogata_home, tiny_llama_dir, [_corpus(tmp_path, lines)])
    assert "\n" not in str(err.value)
    assert [a.name for a in Store().list()] == ["src"]


def test_keeping_everything_is_pointless(kogata_home, tmp_path, tiny_llama_dir):
    with pytest.raises(KogataError, match="nothing to trim"):  # the tokenizer's own training texts need every token
        _trim(kogata_home, tiny_llama_dir, [_corpus(tmp_path, CORPUS)])


@pytest.mark.parametrize("kind", ["WordPiece", "Unigram"])
def test_unsupported_tokenizer_type(kogata_home, tmp_path, tiny_llama_dir, kind):
    import shutil

    from tokenizers import Tokenizer, models

    folder = tmp_path / "m"
    shutil.copytree(tiny_llama_dir, folder)
    words = ["[UNK]", "hello", "world"]
    model = models.WordPiece({w: i for i, w in enumerate(words)}, unk_token="[UNK]") if kind == "WordPiece" else models.Unigram([(w, -1.0) for w in words], 0)
    Tokenizer(model).save(str(folder / "tokenizer.json"))
    with pytest.raises(KogataError, match=f"uses a {kind} tokenizer") as err:
        _trim(kogata_home, folder, [_corpus(tmp_path, EN)])
    assert "BPE" in err.value.hint
    assert [a.name for a in Store().list()] == ["src"]
