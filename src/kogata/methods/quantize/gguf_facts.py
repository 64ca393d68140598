"""What quantize reads from a GGUF file before it runs: tensor names and shapes, the file type, which tensors a
block size fits, and the types llama.cpp chose in an output file.

Shapes are in GGUF (ggml) order: ``shape[0]`` is the row length, the dimension a block of a quantized type runs
along. ``gguf.GGUFReader`` maps the file; nothing is loaded into memory.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def block_size(qtype: str) -> int:
    """Weights per block of a GGUF type: 256 for K-quants and the IQ types (IQ4_NL: 32), 32 for the rest."""
    if qtype == "IQ4_NL":
        return 32
    return 256 if "_K" in qtype or qtype.startswith("IQ") else 32


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Name → shape (ggml order) of every tensor in the GGUF file ``path``."""
    from gguf import GGUFReader

    return {t.name: tuple(int(x) for x in t.shape) for t in GGUFReader(path).tensors}


def inspect_rows(path: Path, qtype: str, shapes: dict[str, tuple[int, ...]] | None = None) -> dict[str, int]:
    """How many 2-D weight tensors can take ``qtype`` (row length a multiple of its block size)."""
    block = block_size(qtype)
    ok = fallback = 0
    widths: set[int] = set()
    for shape in (shapes if shapes is not None else tensor_shapes(path)).values():
        if len(shape) < 2:
            continue
        widths.add(shape[0])
        if shape[0] % block == 0:
            ok += 1
        else:
            fallback += 1
    return {"compatible": ok, "fallback": fallback, "row_widths": sorted(widths)}


def source_file_type(path: Path) -> str:
    """``general.file_type`` of a GGUF file as llama.cpp names it (``F32``, ``Q8_0`` …)."""
    from gguf import GGUFReader, LlamaFileType

    field = GGUFReader(path).get_field("general.file_type")
    if field is None:
        return "unknown"
    value = int(field.parts[field.data[0]][0])
    try:
        return LlamaFileType(value).name.replace("MOSTLY_", "").replace("ALL_", "")
    except ValueError:
        return str(value)


def type_counts(path: Path) -> dict[str, int]:
    """How many 2-D tensors of the GGUF file have each storage type (what llama.cpp actually chose)."""
    from gguf import GGUFReader

    counts = Counter(t.tensor_type.name for t in GGUFReader(path).tensors if len(t.shape) >= 2)
    return dict(counts.most_common())
