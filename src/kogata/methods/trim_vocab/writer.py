"""Writing a trimmed model folder for ``trim-vocab``: the kept rows of the embedding/output matrices sliced out
of the safetensors files, config and tokenizer files remapped to the new ids, everything else linked or copied."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np

import kogata.methods.trim_vocab.tokenizer as vt
from kogata.core.errors import KogataError

EMBED_TENSOR = re.compile(r"(^|\.)(embed_tokens|lm_head|wte|embed_out|word_embeddings)\.(weight|bias)$")


TOKENIZER_VOCAB_FILES = {"vocab.json", "merges.txt", "tokenizer.model", "spiece.model", "tokenizer.tiktoken"}


COPY_SKIP = {"kogata.json", "model.safetensors.index.json", "vocab_map.json", *TOKENIZER_VOCAB_FILES}


# ---- writing the artifact -------------------------------------------------------------------------------------
def write_trimmed(src: Path, dst: Path, v: vt.BPEVocab, kept: list[int], rows: int, parent_id: str) -> dict[int, int]:
    """Write tokenizer, configs, sliced weights and ``vocab_map.json`` into ``dst``; return old id → new id."""
    new_of = {old: new for new, old in enumerate(kept)}
    write_json(dst / "tokenizer.json", vt.trimmed_json(v, kept), indent=None)
    for f in sorted(src.iterdir()):
        if not f.is_file() or f.name in COPY_SKIP or f.suffix == ".safetensors":
            continue
        if f.name == "tokenizer.json":
            continue
        if f.name == "tokenizer_config.json":
            write_json(dst / f.name, vt.remap_tokenizer_config(read_json(f), new_of))
        elif f.name == "added_tokens.json":
            write_json(dst / f.name, vt.remap_added_tokens_file(read_json(f), new_of))
        elif f.name in ("config.json", "generation_config.json"):
            write_json(dst / f.name, remap_config(read_json(f), new_of, len(kept)))
        else:
            link_or_copy(f, dst / f.name)
    index = np.asarray(kept, dtype=np.int64)
    total = 0
    sliced = 0
    for f in sorted(src.glob("*.safetensors")):
        size, n = slice_safetensors(f, dst / f.name, index, rows)
        total += size
        sliced += n
    if not sliced:
        raise KogataError(f"no token embedding with {rows} rows found in {src.name}", "trim-vocab needs embed_tokens/lm_head tensors")
    idx = src / "model.safetensors.index.json"
    if idx.is_file():
        data = read_json(idx)
        data.setdefault("metadata", {})["total_size"] = total
        write_json(dst / idx.name, data)
    write_json(dst / "vocab_map.json", {"format": "kogata-vocab-map/1", "parent": parent_id, "vocab_before": rows,
                                         "vocab_after": len(kept), "new_to_old": kept}, indent=None)
    return new_of


def remap_config(cfg: dict[str, Any], new_of: dict[int, int], size: int) -> dict[str, Any]:
    """config.json / generation_config.json with ``vocab_size`` and every ``*_token_id(s)`` renumbered."""
    out: dict[str, Any] = {}
    for key, val in cfg.items():
        if key == "vocab_size" and isinstance(val, int):
            out[key] = size
        elif isinstance(val, dict) and key.endswith("_config"):
            out[key] = remap_config(val, new_of, size) if "vocab_size" in val else val
        elif key.endswith(("_token_id", "_token_ids")) or key in ("suppress_tokens", "begin_suppress_tokens"):
            if isinstance(val, list):
                out[key] = [new_of[x] for x in val if isinstance(x, int) and x in new_of]
            elif isinstance(val, int) and val >= 0:
                out[key] = new_of.get(val)
            else:
                out[key] = val
        else:
            out[key] = val
    return out


def slice_safetensors(src: Path, dst: Path, kept: np.ndarray, rows: int) -> tuple[int, int]:
    """Copy a safetensors file, keeping only rows ``kept`` of each token-embedding tensor with ``rows`` rows.

    Works on raw bytes through a memory map: the other tensors are copied block by block, and only the kept rows
    of the embedding are read, so no full-size copy of a 262k-row embedding is made. Returns (data bytes, tensors
    sliced)."""
    with open(src, "rb") as f:
        (hlen,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(hlen))
    meta = header.pop("__metadata__", None)
    new_header: dict[str, Any] = {}
    plan = []
    offset = 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        start, end = info["data_offsets"]
        shape = list(info["shape"])
        row_bytes = None
        if EMBED_TENSOR.search(name) and shape and shape[0] == rows:
            row_bytes = (end - start) // rows
            shape[0] = len(kept)
            nbytes = row_bytes * len(kept)
        else:
            nbytes = end - start
        plan.append((start, end, row_bytes))
        new_header[name] = {"dtype": info["dtype"], "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    if meta is not None:
        new_header["__metadata__"] = meta
    hbytes = json.dumps(new_header, separators=(",", ":")).encode()
    hbytes += b" " * (-len(hbytes) % 8)
    data = np.memmap(src, dtype=np.uint8, mode="r", offset=8 + hlen)
    block = 1 << 26
    with open(dst, "wb") as out:
        out.write(struct.pack("<Q", len(hbytes)))
        out.write(hbytes)
        for start, end, row_bytes in plan:
            if row_bytes is None:
                for s in range(start, end, block):
                    out.write(data[s : min(end, s + block)].tobytes())
            else:
                table = data[start:end].reshape(rows, row_bytes)
                step = max(1, block // max(row_bytes, 1))
                for s in range(0, len(kept), step):
                    out.write(table[kept[s : s + step]].tobytes())
    del data
    return offset, sum(1 for p in plan if p[2] is not None)


# ---- small helpers -------------------------------------------------------------------------------------------
def embedding_rows(src: Path, cfg: dict[str, Any]) -> int:
    size = cfg.get("vocab_size") or (cfg.get("text_config") or {}).get("vocab_size")
    if not isinstance(size, int):
        raise KogataError(f"{src / 'config.json'} has no vocab_size", "trim-vocab needs a causal LM config")
    return size


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def write_json(path: Path, data: Any, indent: int | None = 2) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=indent), encoding="utf-8")


def link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
