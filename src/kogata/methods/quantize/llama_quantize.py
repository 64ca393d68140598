"""Quantization through llama.cpp's ``llama-quantize`` tool: an importance matrix and per-tensor type overrides.

The in-process quantizer (``llama_cpp.llama_model_quantize``) and the tool are the same llama.cpp code
(``llama_model_quantize`` of the same source); the tool is used when a step has an imatrix or overrides, which it
takes as files and flags:

* ``token_embedding_type`` → ``--token-embedding-type`` (``token_embd.weight``),
* ``output_type`` → ``--output-tensor-type`` (``output.weight``; a model with tied embeddings has none — its
  token embedding is the output layer — so the option is refused there),
* ``tensor_types: {pattern: type}`` → ``--tensor-type pattern=type``: ``pattern`` is a regular expression searched in
  the tensor names (lower-cased, as llama.cpp does); one that matches no 2-D tensor of the model is an error.

Types are ggml type names (``Q8_0``, ``Q6_K``, ``Q5_K``, ``IQ4_NL``, ``F16`` …; case does not matter).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from kogata.core.errors import KogataError
from kogata.methods.gguf import llamacpp_tools

NOT_STORAGE_TYPES = ("Q8_1", "Q8_K", "I8", "I16", "I32", "I64", "F64")  # ggml types llama-quantize cannot store weights in


def ggml_type_names() -> tuple[str, ...]:
    from gguf import GGMLQuantizationType

    return tuple(t.name for t in GGMLQuantizationType if t.name not in NOT_STORAGE_TYPES)


def check_ggml_type(value: str, what: str) -> str:
    """``value`` as a ggml type name (upper case), or an error naming ``what`` and the valid names."""
    names = ggml_type_names()
    upper = str(value).strip().upper()
    if upper not in names:
        raise KogataError(f"quantize: {what}{value!r} is not a ggml tensor type", f"use one of: {', '.join(names)}")
    return upper


def parse_tensor_types(value: Any) -> dict[str, str] | None:
    """``tensor_types`` from YAML (a mapping) or ``--set`` (``pattern=type,pattern=type``) as ``{pattern: TYPE}``."""
    if value is None or value == "" or value == {}:
        return None
    if isinstance(value, str):
        pairs: dict[str, str] = {}
        for item in filter(None, (x.strip() for x in value.split(","))):
            pattern, sep, qtype = item.rpartition("=")
            if not sep or not pattern or not qtype:
                raise KogataError(f"quantize: tensor_types entry {item!r} is not pattern=type", "write it like tensor_types=attn_v=Q6_K,ffn_down=Q5_K")
            pairs[pattern.strip()] = qtype.strip()
        value = pairs
    if not isinstance(value, dict):
        raise KogataError(f"quantize: tensor_types must map tensor-name patterns to types, not {type(value).__name__}",
                          "in YAML: tensor_types: {attn_v: Q6_K}; with --set: tensor_types=attn_v=Q6_K")
    out = {}
    for pattern, qtype in value.items():
        try:
            re.compile(str(pattern))
        except re.error as exc:
            raise KogataError(f"quantize: tensor_types pattern {pattern!r} is not a valid regular expression ({exc})",
                              "patterns are searched in tensor names, e.g. attn_v or blk\\.[0-3]\\.ffn_down") from None
        out[str(pattern)] = check_ggml_type(qtype, f"tensor_types type for {pattern!r}: ")
    return out


def check_overrides(cfg: Any, shapes: dict[str, tuple[int, ...]], model: str) -> None:
    """Every override must apply to a tensor of the model (else the user meant something that would not happen)."""
    weights = sorted(n for n, s in shapes.items() if len(s) >= 2)
    if cfg.output_type and "output.weight" not in shapes:
        raise KogataError(
            f"quantize: output_type={cfg.output_type} but {model} has no output.weight (tied embeddings: the token embedding is its output layer)",
            "set token_embedding_type instead",
        )
    if cfg.token_embedding_type and "token_embd.weight" not in shapes:
        raise KogataError(f"quantize: token_embedding_type={cfg.token_embedding_type} but {model} has no token_embd.weight",
                          "drop token_embedding_type")
    for pattern in cfg.tensor_types or {}:
        if not any(re.search(pattern.lower(), name) for name in weights):
            examples = ", ".join(dict.fromkeys(re.sub(r"blk\.\d+\.", "blk.N.", n) for n in weights))
            raise KogataError(f"quantize: tensor_types pattern {pattern!r} matches no tensor of {model}",
                              f"its weight tensors are named like: {examples}")


def quantize_args(src: Path, out: Path, cfg: Any, *, imatrix: Path | None, requantize: bool, threads: int) -> list[str]:
    """The ``llama-quantize`` command line for one step."""
    args = ["--allow-requantize"] if requantize else []
    if imatrix is not None:
        args += ["--imatrix", str(imatrix)]
    if cfg.token_embedding_type:
        args += ["--token-embedding-type", cfg.token_embedding_type.lower()]
    if cfg.output_type:
        args += ["--output-tensor-type", cfg.output_type.lower()]
    for pattern, qtype in (cfg.tensor_types or {}).items():
        args += ["--tensor-type", f"{pattern}={qtype.lower()}"]
    return [*args, str(src), str(out), cfg.type, str(threads)]


def run_llama_quantize(src: Path, out: Path, cfg: Any, *, imatrix: Path | None, requantize: bool, threads: int, model: str) -> str:
    args = quantize_args(src, out, cfg, imatrix=imatrix, requantize=requantize, threads=threads)
    output = llamacpp_tools.run_tool("llama-quantize", args, what=f"quantize {model} to {cfg.type}", hint="try another --set type=…")
    if not out.is_file() or out.stat().st_size == 0:
        raise KogataError(f"quantize {model} to {cfg.type}: llama-quantize wrote no file ({llamacpp_tools.tail(output)})", "try another --set type=…")
    return output
