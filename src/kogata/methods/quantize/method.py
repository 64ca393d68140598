"""``quantize``: GGUF types through llama.cpp's own quantizer, and torch dynamic int8 for the torch runtime.

- gguf → gguf: one of :data:`GGUF_TYPES` or :data:`IQ_TYPES`. K-quants and IQ types need weight rows that are a
  multiple of 256; llama.cpp falls back to a compatible type per tensor when they are not (SmolLM2's 576-wide
  rows, for example), and the step records how many tensors fell back and the types the file ends up with.
- Calibrated (``calibration=PATH`` or ``imatrix=REF``, see :mod:`.calibration`) and overridden
  (``token_embedding_type``, ``output_type``, ``tensor_types``, see :mod:`.llama_quantize`) steps run llama.cpp's
  ``llama-quantize`` tool (``make llama-tools``); the others run the same llama.cpp code in process
  (``llama_cpp.llama_model_quantize``), which needs no built tools and writes the same bytes. The IQ types are
  refused without an importance matrix. The step's ``metrics.quantizer`` says which ran; a tool step records the
  tools' build in ``tool_versions``, its ``data_fingerprint`` is the calibration data's (or the given imatrix's),
  and ``metrics.imatrix`` names the imatrix artifact.
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
from typing import Any

from kogata.artifacts.artifact import Artifact, tool_versions
from kogata.artifacts.markers import QUANT_MARKER
from kogata.core.errors import KogataError
from kogata.methods.gguf import llamacpp_tools
from kogata.methods.quantize.gguf_facts import block_size, inspect_rows, source_file_type, tensor_shapes, type_counts
from kogata.methods.quantize.llama_quantize import check_ggml_type, check_overrides, parse_tensor_types, run_llama_quantize
from kogata.methods.registry import MethodContext, config_dict, find_reusable, new_step, register_method
from kogata.methods.search_space import SearchSpace, SpaceContext

GGUF_TYPES = ("Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_0", "Q4_K_M", "Q4_K_S", "Q4_0", "Q4_1", "Q3_K_M", "Q2_K")
# llama.cpp's non-linear "importance" types: quantized with an importance matrix only (kogata refuses them without)
IQ_TYPES = ("IQ4_XS", "IQ4_NL", "IQ3_M", "IQ3_S", "IQ3_XS", "IQ3_XXS", "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S")
TORCH_TYPES = ("int8-dynamic",)
FLOAT_FILE_TYPES = {0: "F32", 1: "F16", 32: "BF16"}
__all__ = ["GGUF_TYPES", "IQ_TYPES", "QuantizeConfig", "block_size", "inspect_rows", "quantize", "source_file_type"]


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


@dataclass
class QuantizeConfig:
    """``type``: the GGUF (or torch) type. Calibration (GGUF only): ``calibration`` — your documents (text/JSONL
    file or folder) to compute an importance matrix from, over ``imatrix_chunks`` chunks (default: all the text
    gives) of ``imatrix_ctx`` tokens — or ``imatrix``, an existing one (artifact or GGUF file). Per-tensor types:
    ``token_embedding_type``, ``output_type``, ``tensor_types`` ({regex pattern: type})."""

    type: str = "Q4_K_M"
    calibration: str | None = None
    imatrix: str | None = None
    imatrix_chunks: int | None = None
    imatrix_ctx: int = 512
    token_embedding_type: str | None = None
    output_type: str | None = None
    tensor_types: dict[str, str] | None = None

    def validate(self) -> None:
        if self.type not in GGUF_TYPES + IQ_TYPES + TORCH_TYPES:
            raise KogataError(
                f"unknown quantization type {self.type!r}",
                f"GGUF types: {', '.join(GGUF_TYPES)}; with calibration: {', '.join(IQ_TYPES)}; torch: {', '.join(TORCH_TYPES)}",
            )
        self.tensor_types = parse_tensor_types(self.tensor_types)
        for key in ("token_embedding_type", "output_type"):
            if getattr(self, key):
                setattr(self, key, check_ggml_type(getattr(self, key), f"{key}="))
        gguf_only = {k: v for k, v in config_dict(self).items() if k not in ("type", "imatrix_ctx") and v}
        if self.type in TORCH_TYPES and gguf_only:
            raise KogataError(f"quantize: {', '.join(gguf_only)} apply to GGUF types, not {self.type}", "drop them, or choose a GGUF type")
        if self.calibration and self.imatrix:
            raise KogataError("quantize: give calibration (to compute an importance matrix) or imatrix (an existing one), not both",
                              "drop one of them")
        if self.type in IQ_TYPES and not (self.calibration or self.imatrix):
            raise KogataError(
                f"quantize: {self.type} needs an importance matrix: IQ types fit their non-linear grids to how much each "
                "weight column matters, which only calibration text can tell (llama.cpp refuses the 1–2-bit ones without)",
                f"add --set calibration=FILE (your documents), or use a type without IQ such as {'Q4_K_M' if '4' in self.type else 'Q3_K_M'}",
            )
        if self.imatrix_chunks is not None and self.imatrix_chunks < 1:
            raise KogataError(f"quantize: imatrix_chunks={self.imatrix_chunks} must be at least 1", "leave it unset to use all of the text")
        if self.imatrix_ctx < 16:
            raise KogataError(f"quantize: imatrix_ctx={self.imatrix_ctx} is too small", "use 512 (llama.cpp's default) or at least 16")
        if self.calibration and not Path(self.calibration).expanduser().exists():
            raise KogataError(f"quantize: calibration {self.calibration} does not exist", "give a text/JSONL file or a folder of your documents")

    def input_format(self) -> str:
        """The artifact format this type works on (a recipe exports an hf artifact to GGUF first for a GGUF type)."""
        return "hf" if self.type in TORCH_TYPES else "gguf"

    def uses_llama_quantize(self) -> bool:
        """Whether the step needs llama.cpp's ``llama-quantize`` tool (an imatrix or a per-tensor override)."""
        return bool(self.calibration or self.imatrix or self.token_embedding_type or self.output_type or self.tensor_types)


# Approximate bits per weight of each type (size estimates before anything is built)
BITS = {"F32": 32.0, "F16": 16.0, "Q8_0": 8.5, "Q6_K": 6.6, "Q5_K_M": 5.7, "Q5_K_S": 5.5, "Q5_0": 5.5, "Q4_1": 5.0,
        "Q4_K_M": 4.9, "Q4_K_S": 4.6, "Q4_0": 4.5, "Q3_K_M": 3.9, "Q2_K": 2.6, "int8-dynamic": 8.0, "FP32": 32.0,
        "IQ4_NL": 4.5, "IQ4_XS": 4.25, "IQ3_M": 3.66, "IQ3_S": 3.44, "IQ3_XS": 3.3, "IQ3_XXS": 3.06, "IQ2_M": 2.7,
        "IQ2_S": 2.5, "IQ2_XS": 2.31, "IQ2_XXS": 2.06, "IQ1_M": 1.75, "IQ1_S": 1.56}


CALIBRATED = "+imatrix"  # a search value "Q4_0+imatrix": that type, calibrated on the project's data


def _search_type(q: str) -> tuple[str, bool]:
    return (q[: -len(CALIBRATED)], True) if q.endswith(CALIBRATED) else (q, False)


def _check_search_types(section: list, ctx: SpaceContext) -> None:
    valid = GGUF_TYPES if ctx.target_format == "gguf" else TORCH_TYPES
    runtime = "llamacpp" if ctx.target_format == "gguf" else "torch"
    for q in section:
        base, calibrated = _search_type(str(q))
        if calibrated and ctx.target_format != "gguf":
            raise KogataError(f"{ctx.where}: search.quantize has {q!r}, but calibration applies to GGUF types", "use llamacpp, or drop +imatrix")
        if calibrated and not ctx.data:
            raise KogataError(f"{ctx.where}: search.quantize has {q!r}, which calibrates on the project's data, and the project has none",
                              "add data: [your documents] to the project, or drop +imatrix")
        if base in IQ_TYPES and not calibrated:
            raise KogataError(f"{ctx.where}: search.quantize has {q!r}: IQ types need an importance matrix", f"write {q}{CALIBRATED}")
        if base not in valid and not (calibrated and base in IQ_TYPES):
            raise KogataError(f"{ctx.where}: search.quantize has {q!r}, which the {runtime} runtime cannot use",
                              f"choose from: {', '.join(valid)} (GGUF types may end in {CALIBRATED}, and {', '.join(IQ_TYPES[:3])}… need it)")


def _search_steps(q: str, ctx: SpaceContext) -> list[dict[str, Any]]:
    base, calibrated = _search_type(q)
    params: dict[str, Any] = {"type": base}
    if calibrated:  # the project's first data file, the company's own text, all of it (one imatrix, reused per model)
        params["calibration"] = ctx.data[0]
    return [{"method": "quantize", "params": params}]


QUANTIZE_SPACE = SearchSpace(
    key="quantize", role="weights", family="quantize", effort=1, build_s=20, section_type=list,
    help="GGUF types to try (llamacpp) — e.g. [Q4_K_M, Q4_0, Q8_0, Q4_0+imatrix (calibrated on the project's data)]; torch: [int8-dynamic]",
    default=["Q4_K_M", "Q4_0", "Q8_0"],
    values=lambda section, ctx: list(dict.fromkeys(section)),  # candidates are ordered by bits later
    steps=_search_steps,
    input_format=lambda q: QuantizeConfig(type=_search_type(q)[0]).input_format() if _search_type(q)[0] not in IQ_TYPES else "gguf",
    choices=lambda fmt: (*GGUF_TYPES, *(t + CALIBRATED for t in GGUF_TYPES + IQ_TYPES)) if fmt == "gguf" else TORCH_TYPES,
    bits=lambda q: BITS.get(_search_type(q)[0], 32.0),
    validate=_check_search_types,
)


@register_method("quantize", QuantizeConfig, input_formats=("gguf", "hf"),
                 summary="GGUF Q8_0…Q2_K, IQ4_XS… via llama.cpp (calibration=FILE: imatrix); torch dynamic int8 (type=int8-dynamic)",
                 search_space=QUANTIZE_SPACE)
def quantize(artifact: Artifact, cfg: QuantizeConfig, ctx: MethodContext) -> Artifact:
    if artifact.kind == "imatrix":
        raise KogataError(f"{artifact.name} is an importance matrix, not a model",
                          f"quantize its model ({artifact.parent}) with --set imatrix={artifact.name}")
    if artifact.format == "hf":
        return _torch_int8(artifact, cfg, ctx)
    if cfg.type in TORCH_TYPES:
        raise KogataError(f"{cfg.type} applies to hf artifacts, but {artifact.name} is gguf", f"choose a GGUF type: {', '.join(GGUF_TYPES)}")
    return _gguf_quantize(artifact, cfg, ctx)


def _gguf_quantize(artifact: Artifact, cfg: QuantizeConfig, ctx: MethodContext) -> Artifact:
    import kogata.core.settings as settings
    from kogata.methods.quantize import calibration

    started = time.time()
    src = artifact.gguf_path
    shapes = tensor_shapes(src)
    rows = inspect_rows(src, cfg.type, shapes)
    if rows["compatible"] == 0:
        raise KogataError(
            f"{cfg.type} needs weight rows that are a multiple of {block_size(cfg.type)}, "
            f"but every row of {artifact.name} is {', '.join(map(str, rows['row_widths']))} wide",
            "choose Q8_0, Q4_0 or Q5_0 (blocks of 32) for this architecture",
        )
    check_overrides(cfg, shapes, artifact.name)
    if cfg.uses_llama_quantize():
        llamacpp_tools.find_tool("llama-quantize")  # missing tools: say so before any work
    imatrix: calibration.ImatrixChoice | None = None
    if cfg.calibration:
        calib = calibration.read_calibration(cfg.calibration)
        if (done := _reusable(artifact, cfg, ctx, calib.fingerprint)) is not None:
            return done
        n_tokens = calibration.count_tokens(src, calib.text)
        n_chunks = calibration.plan_chunks(n_tokens, cfg.imatrix_chunks, cfg.imatrix_ctx, calib, artifact.name)
        llamacpp_tools.find_tool("llama-imatrix")
        imatrix = calibration.calibrated_imatrix(artifact, cfg, ctx, calib, n_tokens, n_chunks)
    elif cfg.imatrix:
        imatrix = calibration.given_imatrix(cfg.imatrix, ctx, shapes, artifact.name)
        if (done := _reusable(artifact, cfg, ctx, imatrix.fingerprint)) is not None:
            return done
    src_type = source_file_type(src)
    requantized = src_type not in ("F32", "F16", "BF16")
    threads = settings.get_threads()
    advance = ctx.task(f"quantize {cfg.type}", 1)
    with ctx.store.stage() as st:
        out = st.dir / f"model-{cfg.type}.gguf"
        if cfg.uses_llama_quantize():
            run_llama_quantize(src, out, cfg, imatrix=imatrix.path if imatrix else None, requantize=requantized, threads=threads, model=artifact.name)
            quantizer = "llama-quantize"
        else:
            _quantize_in_process(src, out, cfg, requantized, threads, artifact.name)
            quantizer = "llama_model_quantize (llama-cpp-python, in process)"
        advance(1)
        note = None
        if requantized:
            note = f"re-quantized from an already quantized GGUF ({src_type}); errors of both quantizations add up"
        metrics: dict[str, Any] = {"source_type": src_type, "requantized": requantized, "tensors_fallback": rows["fallback"],
                                   "tensors_native": rows["compatible"], "quantizer": quantizer, "tensor_types": type_counts(out)}
        if imatrix is not None:
            metrics["imatrix"] = {"artifact": imatrix.artifact.id if imatrix.artifact else None, "reused": imatrix.reused, **imatrix.facts}
            if imatrix.facts.get("model") not in (None, artifact.id):
                note = (note + "; " if note else "") + f"the importance matrix was computed on another model ({imatrix.facts['model']}) with the same tensors"
        step = new_step("quantize", cfg, ctx, started, note=note, metrics=metrics)
        if imatrix is not None:
            step.data_fingerprint = imatrix.fingerprint
        if cfg.uses_llama_quantize():
            step.tool_versions = {**tool_versions(), **llamacpp_tools.tool_versions()}
        return st.commit(
            format="gguf",
            name=ctx.artifact_name(f"{_base_name(artifact)}.{cfg.type.lower()}{'-cal' if imatrix is not None else ''}"),
            parent=artifact,
            step=step,
            model_file=out.name,
            architecture=artifact.architecture,
        )


def _reusable(artifact: Artifact, cfg: QuantizeConfig, ctx: MethodContext, fingerprint: str) -> Artifact | None:
    """A calibrated step made earlier from the same model, config and data (the registry's reuse check does not
    see the calibration data, which the config names only by path)."""
    if not ctx.allow_reuse:
        return None
    found = find_reusable(ctx.store, artifact, "quantize", config_dict(cfg), fingerprint)
    if found is not None:
        ctx.log(f"quantize: reusing {found.name} ({found.id}) made earlier with the same config and data")
    return found


def _quantize_in_process(src: Path, out: Path, cfg: QuantizeConfig, requantized: bool, threads: int, model: str) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{cfg.type}")
    params.nthread = threads
    params.allow_requantize = requantized
    with c_stderr_to_log() as log_text:  # llama.cpp prints a line per tensor
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(out).encode(), params)
    if rc != 0 or not out.exists() or out.stat().st_size == 0:
        tail = " | ".join(line.strip() for line in log_text().splitlines()[-3:] if line.strip())
        raise KogataError(f"llama.cpp could not quantize {model} to {cfg.type} (code {rc}{': ' + tail if tail else ''})",
                          "try another --set type=…")


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
