"""``quantize``: GGUF types through llama.cpp's own quantizer, and torch dynamic int8 for the torch runtime.

- gguf → gguf: ``llama_cpp.llama_model_quantize`` with one of :data:`GGUF_TYPES`. K-quants need weight rows
  that are a multiple of 256; llama.cpp falls back to a compatible type per tensor when they are not (SmolLM2's
  576-wide rows, for example), and the step records how many tensors fell back. An importance matrix cannot be
  passed through the Python bindings (llama.cpp takes it as a C++ map), so none is used.
- hf → hf (``type=int8-dynamic``): ``torch.ao.quantization.quantize_dynamic`` on every ``nn.Linear`` is applied by
  the torch runtime when it loads the artifact; the artifact holds the float weights plus
  ``kogata_quantization.json`` saying so (the only torch-native scheme that is faster on CPU here).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kogata.artifacts.artifact import Artifact
from kogata.artifacts.markers import QUANT_MARKER
from kogata.core.errors import KogataError
from kogata.methods.registry import MethodContext, new_step, register_method
from kogata.methods.search_space import SearchSpace, SpaceContext

GGUF_TYPES = ("Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_0", "Q4_K_M", "Q4_K_S", "Q4_0", "Q4_1", "Q3_K_M", "Q2_K")
TORCH_TYPES = ("int8-dynamic",)
FLOAT_FILE_TYPES = {0: "F32", 1: "F16", 32: "BF16"}


@contextlib.contextmanager
def c_stderr_to_log() -> Iterator[Callable[[], str]]:
    """Send file descriptor 2 (where llama.cpp's C code writes a line per tensor) and ``sys.stderr`` (where
    llama-cpp-python's log callback writes) to a temporary file for the duration; yields a function that returns
    what was written (for error messages), also after the block."""
    captured: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as f, open(f.fileno(), "w", encoding="utf-8", closefd=False) as text:
        os.dup2(f.fileno(), 2)
        try:
            with contextlib.redirect_stderr(text):
                yield lambda: "".join(captured)
        finally:
            text.flush()
            os.dup2(saved, 2)
            os.close(saved)
            f.seek(0)
            captured.append(f.read().decode("utf-8", "replace"))


def block_size(qtype: str) -> int:
    return 256 if "_K" in qtype else 32


@dataclass
class QuantizeConfig:
    type: str = "Q4_K_M"

    def validate(self) -> None:
        if self.type not in GGUF_TYPES + TORCH_TYPES:
            raise KogataError(
                f"unknown quantization type {self.type!r}",
                f"GGUF types: {', '.join(GGUF_TYPES)}; torch: {', '.join(TORCH_TYPES)}",
            )

    def input_format(self) -> str:
        """The artifact format this type works on (a recipe exports an hf artifact to GGUF first for a GGUF type)."""
        return "hf" if self.type in TORCH_TYPES else "gguf"


# Approximate bits per weight of each type (size estimates before anything is built)
BITS = {"F32": 32.0, "F16": 16.0, "Q8_0": 8.5, "Q6_K": 6.6, "Q5_K_M": 5.7, "Q5_K_S": 5.5, "Q5_0": 5.5, "Q4_1": 5.0,
        "Q4_K_M": 4.9, "Q4_K_S": 4.6, "Q4_0": 4.5, "Q3_K_M": 3.9, "Q2_K": 2.6, "int8-dynamic": 8.0, "FP32": 32.0}


def _check_search_types(section: list, ctx: SpaceContext) -> None:
    valid = GGUF_TYPES if ctx.target_format == "gguf" else TORCH_TYPES
    runtime = "llamacpp" if ctx.target_format == "gguf" else "torch"
    for q in section:
        if q not in valid:
            raise KogataError(f"{ctx.where}: search.quantize has {q!r}, which the {runtime} runtime cannot use", f"choose from: {', '.join(valid)}")


QUANTIZE_SPACE = SearchSpace(
    key="quantize", role="weights", family="quantize", effort=1, build_s=20, section_type=list,
    help="GGUF types to try (llamacpp) — e.g. [Q4_K_M, Q4_0, Q8_0]; torch: [int8-dynamic]",
    default=["Q4_K_M", "Q4_0", "Q8_0"],
    values=lambda section, ctx: list(dict.fromkeys(section)),  # candidates are ordered by bits later
    steps=lambda q, ctx: [{"method": "quantize", "params": {"type": q}}],
    input_format=lambda q: QuantizeConfig(type=q).input_format(),
    choices=lambda fmt: GGUF_TYPES if fmt == "gguf" else TORCH_TYPES,
    bits=lambda q: BITS.get(q, 32.0),
    validate=_check_search_types,
)


@register_method("quantize", QuantizeConfig, input_formats=("gguf", "hf"), summary="GGUF Q8_0…Q2_K via llama.cpp; torch dynamic int8 (type=int8-dynamic)",
                 search_space=QUANTIZE_SPACE)
def quantize(artifact: Artifact, cfg: QuantizeConfig, ctx: MethodContext) -> Artifact:
    if artifact.format == "hf":
        return _torch_int8(artifact, cfg, ctx)
    if cfg.type in TORCH_TYPES:
        raise KogataError(f"{cfg.type} applies to hf artifacts, but {artifact.name} is gguf", f"choose a GGUF type: {', '.join(GGUF_TYPES)}")
    return _gguf_quantize(artifact, cfg, ctx)


def inspect_rows(path: Path, qtype: str) -> dict[str, int]:
    """How many 2-D weight tensors can take ``qtype`` (row length a multiple of its block size)."""
    from gguf import GGUFReader

    block = block_size(qtype)
    ok = fallback = 0
    widths: set[int] = set()
    for t in GGUFReader(path).tensors:
        if len(t.shape) < 2:
            continue
        row = int(t.shape[0])
        widths.add(row)
        if row % block == 0:
            ok += 1
        else:
            fallback += 1
    return {"compatible": ok, "fallback": fallback, "row_widths": sorted(widths)}


def source_file_type(path: Path) -> str:
    from gguf import GGUFReader, LlamaFileType

    field = GGUFReader(path).get_field("general.file_type")
    if field is None:
        return "unknown"
    value = int(field.parts[field.data[0]][0])
    try:
        return LlamaFileType(value).name.replace("MOSTLY_", "").replace("ALL_", "")
    except ValueError:
        return str(value)


def _gguf_quantize(artifact: Artifact, cfg: QuantizeConfig, ctx: MethodContext) -> Artifact:
    import llama_cpp

    import kogata.core.settings as settings

    started = time.time()
    src = artifact.gguf_path
    rows = inspect_rows(src, cfg.type)
    if rows["compatible"] == 0:
        raise KogataError(
            f"{cfg.type} needs weight rows that are a multiple of {block_size(cfg.type)}, "
            f"but every row of {artifact.name} is {', '.join(map(str, rows['row_widths']))} wide",
            "choose Q8_0, Q4_0 or Q5_0 (blocks of 32) for this architecture",
        )
    src_type = source_file_type(src)
    requantized = src_type not in ("F32", "F16", "BF16")
    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{cfg.type}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = settings.get_threads()
    params.allow_requantize = requantized
    advance = ctx.task(f"quantize {cfg.type}", 1)
    with ctx.store.stage() as st:
        out = st.dir / f"model-{cfg.type}.gguf"
        with c_stderr_to_log() as log_text:  # llama.cpp prints a line per tensor
            rc = llama_cpp.llama_model_quantize(str(src).encode(), str(out).encode(), params)
        if rc != 0 or not out.exists() or out.stat().st_size == 0:
            tail = " | ".join(line.strip() for line in log_text().splitlines()[-3:] if line.strip())
            raise KogataError(f"llama.cpp could not quantize {artifact.name} to {cfg.type} (code {rc}{': ' + tail if tail else ''})",
                              "try another --set type=…")
        advance(1)
        note = None
        if requantized:
            note = f"re-quantized from an already quantized GGUF ({src_type}); errors of both quantizations add up"
        step = new_step(
            "quantize",
            cfg,
            ctx,
            started,
            note=note,
            metrics={"source_type": src_type, "requantized": requantized, "tensors_fallback": rows["fallback"], "tensors_native": rows["compatible"]},
        )
        return st.commit(
            format="gguf",
            name=ctx.artifact_name(f"{_base_name(artifact)}.{cfg.type.lower()}"),
            parent=artifact,
            step=step,
            model_file=out.name,
            architecture=artifact.architecture,
        )


def _torch_int8(artifact: Artifact, cfg: QuantizeConfig, ctx: MethodContext) -> Artifact:
    if cfg.type not in TORCH_TYPES:
        raise KogataError(
            f"{cfg.type} is a GGUF type but {artifact.name} is an hf artifact",
            f"run export-gguf first (recipe: export-gguf → quantize), or use type={TORCH_TYPES[0]} for the torch runtime",
        )
    started = time.time()
    with ctx.store.stage() as st:
        for f in artifact.path.iterdir():
            if f.name != "kogata.json" and f.is_file():
                try:
                    os.link(f, st.dir / f.name)  # immutable files: a hard link saves the copy
                except OSError:
                    shutil.copyfile(f, st.dir / f.name)
        (st.dir / QUANT_MARKER).write_text(json.dumps({"scheme": "torch-dynamic-int8", "modules": ["torch.nn.Linear"], "dtype": "qint8"}, indent=2))
        step = new_step("quantize", cfg, ctx, started, note="weights stay float on disk; the torch runtime quantizes nn.Linear to int8 when loading")
        return st.commit(format="hf", name=ctx.artifact_name(f"{artifact.name}.int8"), parent=artifact, step=step, architecture=artifact.architecture)


def _base_name(artifact: Artifact) -> str:
    return artifact.name[: -len(".gguf")] if artifact.name.endswith(".gguf") else artifact.name
