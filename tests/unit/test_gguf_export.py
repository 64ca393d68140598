"""HF -> GGUF export: tiny random models must give llama.cpp the same logits and tokens as torch."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
import torch

llama_cpp = pytest.importorskip("llama_cpp")
transformers = pytest.importorskip("transformers")

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

from kogata.core.errors import KogataError  # noqa: E402
from kogata.methods.gguf.writer import export_hf_to_gguf  # noqa: E402

TRAIN_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Small language models can run on cheap hardware, and they still do the job.",
    "She said: it's 42 degrees today, isn't it? We'll see.",
    "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。",
    "東京の天気は晴れです。明日は雨が降るでしょう。",
    "日本語の文章と English words が混ざっています。",
] * 3

# Text the tokenizers were not trained on exactly (unseen characters exercise byte fallback).
CHECK_TEXTS = [
    "The lazy fox said: it's 1234 degrees, isn't it?",
    "  Leading spaces, double  spaces and a newline\nhere.",
    "吾輩は犬である。東京の雨は明日も降る。",
    "English と日本語 mixed 123 😀 ü",
]

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


# --------------------------------------------------------------------------- tiny tokenizers


def _byte_level_tokenizer(style: str) -> PreTrainedTokenizerFast:
    """GPT-2 style byte-level BPE, pre-tokenized like SmolLM2 ("smollm") or Qwen2 ("qwen2")."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    if style == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
        )
    else:
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=420,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TRAIN_TEXTS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>" if style == "smollm" else None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
    )


def _spm_like_tokenizer() -> PreTrainedTokenizerFast:
    """Gemma-style BPE: spaces become "▁", no pre-splitting, byte fallback, BOS added.

    The merges are rebuilt SentencePiece-fashion: every split of every multi-character token into two
    tokens, ordered by the id of the merged token (the way SentencePiece BPE models convert to HF)."""
    base = Tokenizer(models.BPE())
    base.normalizer = normalizers.Replace(" ", "\u2581")
    base.train_from_iterator(TRAIN_TEXTS, trainers.BpeTrainer(vocab_size=300, show_progress=False))
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
    learned = [t for t, _ in sorted(base.get_vocab().items(), key=lambda kv: kv[1])]
    pieces = specials + [f"<0x{b:02X}>" for b in range(256)] + learned
    vocab = {p: i for i, p in enumerate(pieces)}
    merges = [
        (p[:k], p[k:])
        for p in pieces[len(specials) + 256 :]
        for k in range(1, len(p))
        if p[:k] in vocab and p[k:] in vocab
    ]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")  # as transformers' Gemma
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    tok.add_special_tokens(specials)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        pad_token="<pad>",
        chat_template=CHAT_TEMPLATE.replace("<|im_start|>", "<start_of_turn>").replace("<|im_end|>", "<end_of_turn>"),
    )


# --------------------------------------------------------------------------- tiny models


def _randomize(model: torch.nn.Module, *, gemma: bool) -> None:
    """Large enough weights that attention is far from uniform, plus random norms and biases, so a
    wrong rotary layout, norm offset or missing bias shows in the logits."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_((0.0 if gemma else 1.0) + 0.3 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.25 * torch.randn(p.shape, generator=g))


def _make_model(arch: str, vocab_size: int):
    common = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rms_norm_eps=1e-6,
    )
    if arch == "llama":
        config = transformers.LlamaConfig(num_hidden_layers=2, tie_word_embeddings=True, **common)
        model = transformers.LlamaForCausalLM(config)
    elif arch == "qwen2":
        config = transformers.Qwen2Config(num_hidden_layers=2, tie_word_embeddings=False, **common)
        model = transformers.Qwen2ForCausalLM(config)
    else:
        config = transformers.Gemma3TextConfig(
            num_hidden_layers=4,
            head_dim=16,
            query_pre_attn_scalar=16,
            sliding_window=6,
            layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
            tie_word_embeddings=True,
            **common,
        )
        model = transformers.Gemma3ForCausalLM(config)
    _randomize(model, gemma=arch == "gemma3")
    return model.eval()


ARCHS = ["llama", "gemma3", "qwen2"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, dict]:
    """For each architecture: the HF folder, the tokenizer, the model, and its F32 GGUF export."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    out = {}
    for arch in ARCHS:
        hf_dir = tmp_path_factory.mktemp(f"hf_{arch}")
        tok = {"llama": lambda: _byte_level_tokenizer("smollm"), "qwen2": lambda: _byte_level_tokenizer("qwen2")}.get(
            arch, _spm_like_tokenizer
        )()
        model = _make_model(arch, len(tok))
        model.save_pretrained(hf_dir)
        tok.save_pretrained(hf_dir)
        gguf_file = hf_dir.parent / f"{arch}.f32.gguf"
        calls: list[tuple[int, int]] = []
        facts = export_hf_to_gguf(hf_dir, gguf_file, "f32", progress=lambda d, t: calls.append((d, t)))  # noqa: B023
        out[arch] = dict(hf_dir=hf_dir, tok=tok, model=model, gguf=gguf_file, facts=facts, calls=calls)
    return out


def _load(path: Path) -> llama_cpp.Llama:
    # F32 KV cache: the default F16 cache alone costs ~1e-3 relative logit error.
    return llama_cpp.Llama(
        model_path=str(path),
        n_ctx=128,
        n_batch=128,
        n_threads=1,
        logits_all=True,
        type_k=llama_cpp.GGML_TYPE_F32,
        type_v=llama_cpp.GGML_TYPE_F32,
        verbose=False,
    )


def _token_ids(tok) -> list[int]:
    ids = tok(" ".join(CHECK_TEXTS[:3]))["input_ids"]
    assert len(ids) > 30
    return ids[:60]


def _max_rel_diff(llm: llama_cpp.Llama, model, ids: list[int]) -> float:
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].float().numpy()
    llm.eval(ids)
    got = np.asarray(llm.scores[: len(ids)], dtype=np.float32)
    return float(np.abs(got - ref).max() / np.abs(ref).max())


# Relative to the largest logit. llama.cpp's GELU (gemma3) is a tabulated approximation, which alone
# moves gemma3's logits by ~2e-4; the SiLU models match to a few 1e-6.
F32_TOLERANCE = {"llama": 2e-5, "qwen2": 2e-5, "gemma3": 5e-4}


@pytest.mark.parametrize("arch", ARCHS)
def test_f32_logits_match_torch(exported, arch):
    e = exported[arch]
    with closing(_load(e["gguf"])) as llm:
        diff = _max_rel_diff(llm, e["model"], _token_ids(e["tok"]))
    assert diff < F32_TOLERANCE[arch], f"{arch}: max |logit diff| / max |logit| = {diff:.2e}"


@pytest.mark.parametrize("arch", ARCHS)
def test_tokenizer_round_trip(exported, arch):
    e = exported[arch]
    with closing(_load(e["gguf"])) as llm:
        for text in CHECK_TEXTS:
            expected = e["tok"](text)["input_ids"]
            assert llm.tokenize(text.encode(), add_bos=True, special=False) == expected, text
        meta = dict(llm.metadata)
    assert meta["tokenizer.chat_template"] == e["tok"].chat_template
    assert int(meta["tokenizer.ggml.eos_token_id"]) == e["tok"].eos_token_id
    if e["tok"].bos_token_id is not None:
        assert int(meta["tokenizer.ggml.bos_token_id"]) == e["tok"].bos_token_id


@pytest.mark.parametrize("arch", ARCHS)
def test_facts_and_progress(exported, arch):
    e = exported[arch]
    facts = e["facts"]
    assert facts["architecture"] == arch
    assert facts["out_type"] == "f32"
    assert facts["vocab_size"] == len(e["tok"])
    params = dict(e["model"].named_parameters())  # tied weights appear once
    assert facts["n_params"] == sum(p.numel() for p in params.values())
    assert facts["n_tensors"] == len(params)
    assert e["calls"] == [(i, facts["n_tensors"]) for i in range(1, facts["n_tensors"] + 1)]


def test_f16_export_matches_loosely(exported, tmp_path):
    e = exported["llama"]
    out = tmp_path / "llama.f16.gguf"
    facts = export_hf_to_gguf(e["hf_dir"], out, "f16")
    assert facts["out_type"] == "f16"
    assert out.stat().st_size < 0.6 * e["gguf"].stat().st_size
    with closing(_load(out)) as llm:
        diff = _max_rel_diff(llm, e["model"], _token_ids(e["tok"]))
    assert diff < 1e-2, f"f16: max |logit diff| / max |logit| = {diff:.2e}"


def test_unsupported_architecture_raises(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 2}))
    with pytest.raises(KogataError) as err:
        export_hf_to_gguf(tmp_path, tmp_path / "out.gguf")
    assert "gpt2" in str(err.value) and err.value.hint


def test_unsupported_out_type_raises(exported, tmp_path):
    with pytest.raises(KogataError):
        export_hf_to_gguf(exported["llama"]["hf_dir"], tmp_path / "out.gguf", out_type="q4_0")


def test_failed_export_leaves_no_file(exported, tmp_path):
    out = tmp_path / "out.gguf"

    def boom(done: int, total: int) -> None:
        if done == 3:
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        export_hf_to_gguf(exported["qwen2"]["hf_dir"], out, progress=boom)
    assert not out.exists()
    assert not out.with_suffix(".part").exists()
