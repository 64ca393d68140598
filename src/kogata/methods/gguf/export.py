"""``export-gguf``: an hf artifact → a GGUF artifact (F32 or F16) that llama.cpp runs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from kogata.artifacts.artifact import Artifact
from kogata.methods.registry import MethodContext, new_step, register_method


@dataclass
class ExportGGUFConfig:
    out_type: Literal["f32", "f16"] = "f32"


@register_method("export-gguf", ExportGGUFConfig, input_formats=("hf",), summary="HF safetensors → GGUF (F32/F16) for llama.cpp")
def export_gguf(artifact: Artifact, cfg: ExportGGUFConfig, ctx: MethodContext) -> Artifact:
    from kogata.methods.gguf.writer import export_hf_to_gguf

    started = time.time()
    with ctx.store.stage() as st:
        out = st.dir / f"model-{cfg.out_type}.gguf"
        tick = {"bar": None}

        def progress(done: int, total: int) -> None:
            if tick["bar"] is None:
                tick["bar"] = ctx.task(f"export-gguf {cfg.out_type}", total)
            tick["bar"](1)

        facts = export_hf_to_gguf(artifact.path, out, out_type=cfg.out_type, progress=progress)
        step = new_step("export-gguf", cfg, ctx, started, metrics=facts)
        return st.commit(
            format="gguf",
            name=ctx.artifact_name(f"{artifact.name}.{cfg.out_type}.gguf"),
            parent=artifact,
            step=step,
            model_file=out.name,
            architecture=facts.get("architecture"),
        )
