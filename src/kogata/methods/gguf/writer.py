"""Export a Hugging Face causal language model folder to a GGUF file that llama.cpp can run.

Supported architectures: ``llama`` (e.g. SmolLM2), ``gemma3_text`` (Gemma 3 text models) and
``qwen2``. Weights are read with ``safetensors`` (never pickle) and streamed into the GGUF file one
tensor at a time, so memory use stays near the size of the largest tensor. Tensor names come from
the ``gguf`` package's tensor name maps; the tokenizer is written by :mod:`kogata.methods.gguf.vocab`.

Transforms that llama.cpp's compute graphs need:

* llama: llama.cpp applies rotary embeddings to adjacent pairs ``(2i, 2i+1)`` of each head, while
  HF's ``rotate_half`` pairs ``i`` with ``i + head_dim/2``. The rows of ``q_proj``/``k_proj``
  (and their biases, if any) are reordered per head so that both compute the same thing.
* gemma3: HF stores RMSNorm weights as ``w`` and multiplies by ``1 + w``; llama.cpp multiplies by
  the stored weight, so ``1 + w`` is stored.
* qwen2 and gemma3 use the NEOX rotary layout in llama.cpp, which matches HF: no reordering.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from safetensors import safe_open

from kogata.core.errors import KogataError
from kogata.methods.gguf.vocab import write_vocab

# HF ``model_type`` -> GGUF architecture.
ARCHES: dict[str, gguf.MODEL_ARCH] = {
    "llama": gguf.MODEL_ARCH.LLAMA,
    "gemma3_text": gguf.MODEL_ARCH.GEMMA3,
    "qwen2": gguf.MODEL_ARCH.QWEN2,
}

_OUT_TYPES = {
    "f32": gguf.LlamaFileType.ALL_F32,
    "f16": gguf.LlamaFileType.MOSTLY_F16,
}

# HF tensors that carry no weights llama.cpp needs.
_SKIP_SUFFIXES = ("rotary_emb.inv_freq",)


@dataclass
class _Tensor:
    hf_name: str
    gguf_name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    file: Path


def export_hf_to_gguf(
    hf_dir: Path,
    out_file: Path,
    out_type: str = "f32",
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Convert the HF model in ``hf_dir`` to a GGUF file at ``out_file``.

    ``out_type`` is ``"f32"`` or ``"f16"`` (with ``"f16"``, 2-D weight matrices are stored as F16 and
    norms and biases as F32). ``progress(done, total)`` is called after each tensor is written.
    The file is written to ``out_file.with_suffix(".part")`` and renamed when complete, so a failed
    export never leaves a half-written ``out_file``. Returns facts about the export.
    """
    hf_dir, out_file = Path(hf_dir), Path(out_file)
    if out_type not in _OUT_TYPES:
        raise KogataError(f"unsupported GGUF output type {out_type!r}", "use 'f32' or 'f16'")
    config = read_config(hf_dir)
    model_type = config.get("model_type")
    if model_type not in ARCHES:
        raise KogataError(
            f"cannot export model_type {model_type!r} to GGUF",
            f"supported model types: {', '.join(sorted(ARCHES))}",
        )
    arch = ARCHES[model_type]
    arch_name = gguf.MODEL_ARCH_NAMES[arch]
    tensors = _plan_tensors(hf_dir, config, arch, out_type)

    part = out_file.with_suffix(".part")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(None, arch_name)
    try:
        writer.add_name(hf_dir.name)
        writer.add_file_type(int(_OUT_TYPES[out_type]))
        n_vocab = write_vocab(writer, hf_dir, _vocab_rows(tensors))
        _write_hparams(writer, config, arch, n_vocab)
        for t in tensors:
            nbytes = int(np.prod(t.shape)) * t.dtype.itemsize
            writer.add_tensor_info(t.gguf_name, t.shape, t.dtype, nbytes)
        writer.open_output_file(part)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        with closing(_load_tensors(tensors, config, arch)) as loaded:
            for done, data in enumerate(loaded, start=1):
                writer.write_tensor_data(data)
                if progress is not None:
                    progress(done, len(tensors))
        writer.close()
        os.replace(part, out_file)
    except BaseException:
        writer.close()
        part.unlink(missing_ok=True)
        raise
    return {
        "architecture": arch_name,
        "out_type": out_type,
        "n_tensors": len(tensors),
        "n_params": sum(int(np.prod(t.shape)) for t in tensors),
        "vocab_size": n_vocab,
    }


# --------------------------------------------------------------------------- config


def read_config(hf_dir: Path) -> dict[str, Any]:
    path = hf_dir / "config.json"
    if not path.is_file():
        raise KogataError(f"no config.json in {hf_dir}", "point at a Hugging Face model folder")
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("model_type") == "gemma3" and "text_config" in config:
        raise KogataError(
            "cannot export the multimodal Gemma 3 model (model_type 'gemma3') to GGUF",
            "export a text-only Gemma 3 model (model_type 'gemma3_text'), e.g. gemma-3-1b-it",
        )
    return config


def _rope_params(config: dict[str, Any], layer_type: str = "full_attention") -> dict[str, Any]:
    """Rotary settings (``rope_theta``, ``rope_type``, ``factor``) for one kind of layer, from the
    ``rope_parameters`` layout of transformers 5 (possibly keyed by layer type) or the older
    ``rope_theta``/``rope_scaling``/``rope_local_base_freq`` fields."""
    params = config.get("rope_parameters")
    if isinstance(params, dict) and layer_type in params:
        params = params[layer_type]
    if params:
        out = dict(params)
    elif layer_type == "sliding_attention":
        out = {"rope_theta": config.get("rope_local_base_freq", 10000.0)}
    else:
        out = dict(config.get("rope_scaling") or {})
        out["rope_theta"] = config.get("rope_theta", 10000.0)
    out.setdefault("rope_type", out.get("type") or "default")
    return out


def _head_dim(config: dict[str, Any]) -> int:
    return int(config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"])


def _write_hparams(writer: gguf.GGUFWriter, config: dict[str, Any], arch: gguf.MODEL_ARCH, n_vocab: int) -> None:
    head_dim = _head_dim(config)
    n_layers = int(config["num_hidden_layers"])
    writer.add_vocab_size(n_vocab)
    writer.add_context_length(int(config.get("max_position_embeddings") or 2048))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(int(config["num_attention_heads"]))
    writer.add_head_count_kv(int(config.get("num_key_value_heads") or config["num_attention_heads"]))
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))

    global_rope = _rope_params(config)
    writer.add_rope_freq_base(float(global_rope.get("rope_theta", 10000.0)))
    _write_rope_scaling(writer, global_rope)

    if arch == gguf.MODEL_ARCH.LLAMA:
        if config.get("mlp_bias"):
            raise KogataError("cannot export a llama model with mlp_bias to GGUF", "llama.cpp has no FFN bias for llama")
    elif arch == gguf.MODEL_ARCH.QWEN2:
        if config.get("use_sliding_window") and config.get("sliding_window"):
            raise KogataError(
                "cannot export a qwen2 model that uses sliding-window attention to GGUF",
                "llama.cpp's qwen2 runs full attention on every layer",
            )
    elif arch == gguf.MODEL_ARCH.GEMMA3:
        _write_gemma3_hparams(writer, config, head_dim, n_layers)


def _write_rope_scaling(writer: gguf.GGUFWriter, rope: dict[str, Any]) -> None:
    kind = rope["rope_type"]
    if kind == "default":
        return
    if kind == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
        return
    raise KogataError(f"cannot export rope scaling type {kind!r} to GGUF", "supported: none, 'linear'")


def _write_gemma3_hparams(writer: gguf.GGUFWriter, config: dict[str, Any], head_dim: int, n_layers: int) -> None:
    scalar = config.get("query_pre_attn_scalar")
    # llama.cpp scales queries by 1/sqrt(head_dim), except for the 62-layer (27B) model.
    expected = config["hidden_size"] // config["num_attention_heads"] if n_layers == 62 else head_dim
    if scalar is not None and int(scalar) != expected:
        raise KogataError(
            f"gemma3 query_pre_attn_scalar={scalar} is not supported by llama.cpp",
            f"llama.cpp uses {expected} for this model shape",
        )
    if config.get("attn_logit_softcapping"):
        raise KogataError("gemma3 attention logit soft-capping is not supported by llama.cpp")
    if config.get("final_logit_softcapping"):
        writer.add_final_logit_softcapping(float(config["final_logit_softcapping"]))
    window = config.get("sliding_window")
    if not window:
        return
    layer_types = config.get("layer_types")
    if not layer_types:
        pattern = int(config.get("sliding_window_pattern") or config.get("_sliding_window_pattern") or 6)
        layer_types = [
            "full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(n_layers)
        ]
    writer.add_sliding_window(int(window))
    writer.add_sliding_window_pattern([t == "sliding_attention" for t in layer_types])
    local_rope = _rope_params(config, "sliding_attention")
    if local_rope["rope_type"] != "default":
        raise KogataError("cannot export rope scaling on gemma3 sliding-window layers to GGUF")
    writer.add_rope_freq_base_swa(float(local_rope.get("rope_theta", 10000.0)))


# --------------------------------------------------------------------------- tensors


def _safetensors_files(hf_dir: Path) -> list[Path]:
    files = sorted(hf_dir.glob("*.safetensors"))
    if not files:
        raise KogataError(
            f"no *.safetensors weights in {hf_dir}",
            "save the model with safetensors (save_pretrained does this by default)",
        )
    return files


def _tied(config: dict[str, Any], arch: gguf.MODEL_ARCH) -> bool:
    default = arch == gguf.MODEL_ARCH.GEMMA3
    return bool(config.get("tie_word_embeddings", default))


def _plan_tensors(hf_dir: Path, config: dict[str, Any], arch: gguf.MODEL_ARCH, out_type: str) -> list[_Tensor]:
    """List the tensors to write, with GGUF names, shapes and output dtypes, without loading data."""
    n_layers = int(config["num_hidden_layers"])
    name_map = gguf.get_tensor_name_map(arch, n_layers)
    tied = _tied(config, arch)
    plan: list[_Tensor] = []
    for file in _safetensors_files(hf_dir):
        with safe_open(file, framework="pt") as f:
            for hf_name in f.keys():
                if hf_name.endswith(_SKIP_SUFFIXES) or (tied and hf_name == "lm_head.weight"):
                    continue
                gguf_name = gguf_tensor_name(name_map, hf_name, arch)
                shape = tuple(f.get_slice(hf_name).get_shape())
                dtype = np.dtype(np.float16 if out_type == "f16" and len(shape) == 2 else np.float32)
                plan.append(_Tensor(hf_name, gguf_name, shape, dtype, file))
    names = {t.gguf_name for t in plan}
    if "token_embd.weight" not in names:
        raise KogataError(f"no token embedding found in {hf_dir}", "is this a causal language model folder?")
    if len(names) != len(plan):
        raise KogataError(f"duplicate tensors in {hf_dir}", "remove stray *.safetensors files from the folder")
    return plan


def gguf_tensor_name(name_map: gguf.TensorNameMap, hf_name: str, arch: gguf.MODEL_ARCH) -> str:
    name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
    if name is None:
        raise KogataError(
            f"cannot map tensor {hf_name!r} to GGUF for {gguf.MODEL_ARCH_NAMES[arch]}",
            "the checkpoint has weights this exporter does not know about",
        )
    return name


def _vocab_rows(plan: list[_Tensor]) -> int:
    return next(t.shape[0] for t in plan if t.gguf_name == "token_embd.weight")


def _load_tensors(plan: list[_Tensor], config: dict[str, Any], arch: gguf.MODEL_ARCH) -> Iterator[np.ndarray]:
    """Yield each planned tensor's data, transformed for llama.cpp, in plan order."""
    n_head = int(config["num_attention_heads"])
    n_head_kv = int(config.get("num_key_value_heads") or n_head)
    with ExitStack() as stack:
        handles: dict[Path, Any] = {}
        for t in plan:
            if t.file not in handles:
                handles[t.file] = stack.enter_context(safe_open(t.file, framework="pt"))
            data = handles[t.file].get_tensor(t.hf_name).to(torch.float32)
            if arch == gguf.MODEL_ARCH.LLAMA and t.hf_name.endswith(("q_proj.weight", "q_proj.bias")):
                data = rope_rows_to_interleaved(data, n_head)
            elif arch == gguf.MODEL_ARCH.LLAMA and t.hf_name.endswith(("k_proj.weight", "k_proj.bias")):
                data = rope_rows_to_interleaved(data, n_head_kv)
            elif arch == gguf.MODEL_ARCH.GEMMA3 and t.hf_name.endswith("norm.weight"):
                data = data + 1.0
            yield np.ascontiguousarray(data.numpy().astype(t.dtype, copy=False))


def rope_rows_to_interleaved(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder the output rows of a q/k projection from HF's half-split rotary layout to llama.cpp's
    adjacent-pair layout.

    Within each head HF rotates dimension ``i`` together with ``i + d/2``; llama.cpp's "normal" rope
    rotates ``2i`` with ``2i + 1``. Row ``2i`` of the result is HF row ``i`` and row ``2i + 1`` is
    HF row ``i + d/2``. Works for weights ``(rows, in)`` and biases ``(rows,)``.
    """
    rows = w.shape[0]
    head_dim = rows // n_heads
    rest = w.shape[1:]
    return w.reshape(n_heads, 2, head_dim // 2, *rest).transpose(1, 2).reshape(rows, *rest)
