"""One way to get (model, tokenizer) for torch from any artifact or local path.

Only safetensors and GGUF are read; pickle checkpoints are refused unless ``allow_pickle``;
``trust_remote_code`` is never set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kogata.core.settings as settings
from kogata.artifacts.artifact import Artifact
from kogata.artifacts.inspect import inspect_path
from kogata.core.errors import KogataError

DTYPES = ("float32", "bfloat16", "float16")


def load_tokenizer(src: Artifact | Path) -> Any:
    from transformers import AutoTokenizer

    folder, gguf_file, _ = _resolve(src, allow_pickle=True)
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    return AutoTokenizer.from_pretrained(folder, trust_remote_code=False, **kwargs)


def load_torch(src: Artifact | Path, *, dtype: str = "float32", allow_pickle: bool = False) -> tuple[Any, Any]:
    """Load a causal LM (or embedder) and its tokenizer on CPU in eval mode."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    if dtype not in DTYPES:
        raise KogataError(f"unknown dtype {dtype!r}", f"choose one of: {', '.join(DTYPES)}")
    settings.set_threads(settings.get_threads())
    folder, gguf_file, kind = _resolve(src, allow_pickle=allow_pickle)
    tokenizer = load_tokenizer(src)
    auto = AutoModel if kind == "embedder" else AutoModelForCausalLM
    kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype), "trust_remote_code": False}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    else:
        kwargs["use_safetensors"] = not allow_pickle or any(Path(folder).glob("*.safetensors"))
    model = auto.from_pretrained(folder, **kwargs)
    model.eval()
    return model, tokenizer


def _resolve(src: Artifact | Path, *, allow_pickle: bool) -> tuple[Path, str | None, str]:
    if isinstance(src, Artifact):
        if src.kind == "lora-adapter":
            raise KogataError(
                f"{src.name} is a LoRA adapter, not a model",
                f"merge it into its base first: kogata compress {src.name} --method merge",
            )
        return src.path, src.manifest.get("model_file") if src.format == "gguf" else None, src.kind
    info = inspect_path(Path(src), allow_pickle=allow_pickle)
    path = Path(src)
    if info.format == "gguf":
        return (path.parent if path.is_file() else path), info.model_file, info.kind
    return path, None, info.kind
