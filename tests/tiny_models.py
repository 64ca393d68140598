"""Tiny randomly initialised models with a real (trained-here) tokenizer, for fast offline tests."""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "Hello, how can I help you today?",
    "The refrigerator SK-R450 has a one-year warranty.",
    "Please restart the SakuraHome app and try again.",
    "Shipping takes three to five business days.",
    "お問い合わせありがとうございます。",
    "冷蔵庫の保証期間は一年間です。",
    "アプリを再起動してください。",
    "配送には三日から五日かかります。",
    "0123456789 ¥1,980 (税込) — FAQ: returns within 30 days.",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_tokenizer(vocab_size: int = 300):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_tiny_model(folder: Path, arch: str = "llama", seed: int = 0) -> Path:
    """Save a tiny random ``llama`` | ``gemma3`` | ``qwen2`` causal LM with tokenizer into ``folder``."""
    import torch
    from transformers import AutoModelForCausalLM

    tok = make_tokenizer()
    n_vocab = len(tok)
    common = dict(
        vocab_size=n_vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    if arch == "llama":
        from transformers import LlamaConfig

        cfg = LlamaConfig(**common, tie_word_embeddings=True, rms_norm_eps=1e-5)
    elif arch == "qwen2":
        from transformers import Qwen2Config

        cfg = Qwen2Config(**common, tie_word_embeddings=True)
    elif arch == "gemma3":
        from transformers import Gemma3TextConfig

        cfg = Gemma3TextConfig(
            **common,
            head_dim=16,
            sliding_window=8,
            layer_types=["sliding_attention", "full_attention"],
            query_pre_attn_scalar=16,
        )
    else:
        raise ValueError(arch)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with torch.no_grad():  # non-trivial norms so that norm conventions are actually tested
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder
