"""Calibration statistics that say which parts of a decoder-only LM matter, for ``prune-depth``/``prune-width``.

All functions take a loaded HF causal LM (llama / gemma3 / qwen2 layout: ``model.model.layers[i].self_attn``
and ``.mlp``) and a list of token batches, run the model without gradients and read activations through forward
hooks, so they follow whatever the installed transformers computes.

* :func:`block_influence` — ShortGPT's "block influence": ``1 − cos(x_in, x_out)`` of each decoder block,
  averaged over every calibration token. A block that leaves the residual stream unchanged scores 0.
* :func:`skip_loss_increase` — the increase of the LM loss on the calibration tokens when one block is skipped
  (its output replaced by its input), one forward pass per block.
* :func:`mlp_channel_importance` — Minitron's activation importance of each MLP intermediate channel: the mean
  ``|act(gate(x)) * up(x)|`` (the input of ``down_proj``) over tokens.
* :func:`head_importance` — per query head, the mean L2 norm of that head's contribution to the residual stream
  (its slice of the attention output multiplied by its columns of ``o_proj``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch

from kogata.core.errors import KogataError


def decoder_layers(model: Any) -> Any:
    """The ``nn.ModuleList`` of decoder blocks."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise KogataError(
            f"cannot find the decoder layers of {type(model).__name__}",
            "pruning supports llama-, gemma3- and qwen2-style causal LMs (model.model.layers)",
        )
    return layers


# ---- calibration tokens -------------------------------------------------------------------------------------
def calibration_batches(model: Any, tokenizer: Any, texts: list[str], *, tokens: int, seq_len: int, seed: int) -> tuple[list[torch.Tensor], str]:
    """Up to ``tokens`` calibration tokens as ``[1, seq_len]`` batches, and where they came from.

    With texts: the texts tokenised and concatenated (EOS between documents), cut into windows. Without: the
    model's own samples (temperature 1, from BOS/EOS), which reflect what the model does and need no data.
    """
    seq_len = max(2, min(seq_len, tokens))
    if texts:
        ids = pack_ids(tokenizer, texts)[:tokens]
        if len(ids) < 2:
            raise KogataError("the calibration texts hold fewer than 2 tokens", "pass --data with some real text")
        return [torch.tensor([ids[i : i + seq_len]]) for i in range(0, len(ids), seq_len) if len(ids[i : i + seq_len]) >= 2], "data"
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    n_seq = math.ceil(tokens / seq_len)
    gen = torch.Generator().manual_seed(seed)
    seqs = _sample(model, start, n_seq, seq_len, gen)
    return [s.unsqueeze(0) for s in seqs], "self-generated"


def pack_ids(tokenizer: Any, texts: list[str]) -> list[int]:
    """Token ids of all texts, each followed by EOS (no BOS: documents are packed back to back)."""
    eos = tokenizer.eos_token_id
    out: list[int] = []
    for t in texts:
        out.extend(tokenizer(t, add_special_tokens=False)["input_ids"])
        if eos is not None:
            out.append(eos)
    return out


@torch.no_grad()
def _sample(model: Any, start: int, n_seq: int, seq_len: int, gen: torch.Generator) -> torch.Tensor:
    """Ancestral sampling (temperature 1) with a KV cache and a seeded generator: reproducible."""
    import inspect

    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    ids = torch.full((n_seq, 1), int(start), dtype=torch.long)
    out = model(input_ids=ids, use_cache=True)
    for _ in range(seq_len - 1):
        probs = torch.softmax(out.logits[:, -1].float(), dim=-1)
        nxt = torch.multinomial(probs, 1, generator=gen)
        ids = torch.cat([ids, nxt], dim=1)
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        out = model(input_ids=nxt, use_cache=True, **{cache_kw: cache})
    return ids


# ---- hooks ----------------------------------------------------------------------------------------------------
def _hidden(x: Any) -> torch.Tensor:
    return x[0] if isinstance(x, (tuple, list)) else x


@contextlib.contextmanager
def _hooks(handles: list[Any]) -> Iterator[None]:
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _run(model: Any, batches: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for b in batches:
            model(input_ids=b, use_cache=False)


def block_influence(model: Any, batches: list[torch.Tensor]) -> list[float]:
    """``1 − cos(input, output)`` of every decoder block, averaged over all calibration tokens."""
    layers = decoder_layers(model)
    sums = [0.0] * len(layers)
    count = [0]

    def hook(i: int):
        def fn(module, args, kwargs, output):
            x_in = _hidden(args[0] if args else kwargs["hidden_states"]).float()
            x_out = _hidden(output).float()
            cos = torch.nn.functional.cosine_similarity(x_in, x_out, dim=-1)
            sums[i] += float((1.0 - cos).sum())
            if i == 0:
                count[0] += cos.numel()

        return fn

    with _hooks([layer.register_forward_hook(hook(i), with_kwargs=True) for i, layer in enumerate(layers)]):
        _run(model, batches)
    return [s / max(1, count[0]) for s in sums]


def lm_loss(model: Any, batches: list[torch.Tensor]) -> float:
    """Mean next-token cross-entropy (nats per token) over the batches."""
    total, n = 0.0, 0
    with torch.no_grad():
        for b in batches:
            logits = model(input_ids=b, use_cache=False).logits[:, :-1].float()
            target = b[:, 1:]
            total += float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="sum"))
            n += target.numel()
    return total / max(1, n)


def skip_loss_increase(model: Any, batches: list[torch.Tensor], base: float | None = None) -> list[float]:
    """How much the LM loss rises when each block alone is skipped (identity instead of the block)."""
    layers = decoder_layers(model)
    base = lm_loss(model, batches) if base is None else base

    def identity(module, args, kwargs, output):
        x_in = args[0] if args else kwargs["hidden_states"]
        return (x_in, *output[1:]) if isinstance(output, tuple) else x_in

    out = []
    for layer in layers:
        with _hooks([layer.register_forward_hook(identity, with_kwargs=True)]):
            out.append(lm_loss(model, batches) - base)
    return out


def mlp_channel_importance(model: Any, batches: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per layer, the mean |activation| of each MLP intermediate channel (input of ``down_proj``)."""
    layers = decoder_layers(model)
    sums: list[torch.Tensor | None] = [None] * len(layers)
    count = [0]

    def hook(i: int):
        def fn(module, args):
            a = args[0].detach().float().abs()
            s = a.reshape(-1, a.shape[-1]).sum(0)
            sums[i] = s if sums[i] is None else sums[i] + s
            if i == 0:
                count[0] += a.numel() // a.shape[-1]

        return fn

    with _hooks([layer.mlp.down_proj.register_forward_pre_hook(hook(i)) for i, layer in enumerate(layers)]):
        _run(model, batches)
    return [s / max(1, count[0]) for s in sums]  # type: ignore[operator]


def head_importance(model: Any, batches: list[torch.Tensor], n_heads: int, head_dim: int) -> list[torch.Tensor]:
    """Per layer, the mean L2 norm of each query head's contribution ``o_proj[:, head] @ attn_out[head]``."""
    layers = decoder_layers(model)
    sums: list[torch.Tensor | None] = [None] * len(layers)
    count = [0]

    def hook(i: int):
        def fn(module, args):
            a = args[0].detach().float()
            a = a.reshape(-1, n_heads, head_dim)  # tokens × heads × head_dim
            w = module.weight.detach().float().reshape(module.weight.shape[0], n_heads, head_dim)  # hidden × heads × hd
            contrib = torch.einsum("thd,ohd->tho", a, w)  # tokens × heads × hidden
            s = contrib.norm(dim=-1).sum(0)
            sums[i] = s if sums[i] is None else sums[i] + s
            if i == 0:
                count[0] += a.shape[0]

        return fn

    with _hooks([layer.self_attn.o_proj.register_forward_pre_hook(hook(i)) for i, layer in enumerate(layers)]):
        _run(model, batches)
    return [s / max(1, count[0]) for s in sums]  # type: ignore[operator]
