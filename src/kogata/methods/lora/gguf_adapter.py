"""``export-lora-gguf``: a LoRA adapter artifact → a GGUF LoRA adapter that llama.cpp applies at run time.

llama.cpp reads a LoRA adapter as a GGUF file with ``general.type = adapter``, ``general.architecture`` equal
to the base model's, ``adapter.type = lora`` and ``adapter.lora.alpha``, and one pair of tensors
``<base tensor name>.lora_a`` / ``.lora_b`` per adapted weight. Its graph adds
``scale * B(A x)`` with ``scale = lora_scale * alpha / rank`` (rank read from the tensors), the same as peft's
``alpha / r``. peft's ``lora_A`` (``rank x in``) and ``lora_B`` (``out x rank``) are written as they are —
except that for llama, ``q_proj``/``k_proj`` output rows are reordered exactly as :mod:`.gguf_export` reorders
the base weights (rotary layout), so ``B``'s rows are permuted the same way.

Use it with llama-cpp-python: ``Llama(model_path=<base exported with export-gguf>, lora_path=<adapter.gguf>)``
(the base may be quantized: llama.cpp applies the adapter on top of the quantized weights).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import gguf
import numpy as np

from kogata.artifacts.artifact import Artifact
from kogata.core.errors import KogataError
from kogata.methods.registry import MethodContext, new_step, register_method

_DTYPES = {"f32": np.float32, "f16": np.float16}


@dataclass
class ExportLoraGGUFConfig:
    out_type: Literal["f32", "f16"] = "f32"


@register_method(
    "export-lora-gguf",
    ExportLoraGGUFConfig,
    input_formats=("hf",),
    summary="LoRA adapter → GGUF LoRA adapter for llama.cpp (Llama(..., lora_path=...)) without merging",
)
def export_lora_gguf(artifact: Artifact, cfg: ExportLoraGGUFConfig, ctx: MethodContext) -> Artifact:
    from kogata.methods.lora.method import ADAPTER_KIND, ADAPTER_META, adapter_meta

    started = time.time()
    meta = adapter_meta(artifact)
    base = ctx.store.find(meta["base_id"])
    if base is None:
        raise KogataError(
            f"the base {meta.get('base_name')} ({meta['base_id']}) of adapter {artifact.name} is not in the store",
            "the GGUF adapter needs the base model's config; import the base model again",
        )
    with ctx.store.stage() as st:
        out = st.dir / f"adapter-{cfg.out_type}.gguf"
        facts = write_lora_gguf(artifact.path, base.path, out, out_type=cfg.out_type)
        (st.dir / ADAPTER_META).write_text(json.dumps({**meta, "gguf": facts}, indent=2))
        step = new_step("export-lora-gguf", cfg, ctx, started, metrics=facts,
                        note="apply with llama.cpp on the base exported by export-gguf (any quantization of it)")
        return st.commit(
            format="gguf",
            name=ctx.artifact_name(f"{artifact.name}.{cfg.out_type}.gguf"),
            parent=artifact,
            step=step,
            model_file=out.name,
            params=facts["n_params"],
            architecture=facts["architecture"],
            kind=ADAPTER_KIND,
        )


def write_lora_gguf(adapter_dir: Path, base_dir: Path, out_file: Path, out_type: str = "f32") -> dict:
    """Write the peft adapter in ``adapter_dir`` (trained on the HF model in ``base_dir``) as a GGUF LoRA."""
    import torch
    from safetensors.torch import load_file

    from kogata.methods.gguf.writer import ARCHES, gguf_tensor_name, read_config, rope_rows_to_interleaved

    config = read_config(Path(base_dir))
    model_type = config.get("model_type")
    if model_type not in ARCHES:
        raise KogataError(f"cannot export a LoRA adapter for model_type {model_type!r} to GGUF", f"supported: {', '.join(sorted(ARCHES))}")
    arch = ARCHES[model_type]
    conf = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    if conf.get("use_rslora") or conf.get("use_dora") or conf.get("rank_pattern") or conf.get("alpha_pattern"):
        raise KogataError("this adapter uses rsLoRA/DoRA or per-module ranks, which the GGUF LoRA export does not support", "merge it instead")
    alpha = float(conf["lora_alpha"])
    name_map = gguf.get_tensor_name_map(arch, int(config["num_hidden_layers"]))
    n_head = int(config["num_attention_heads"])
    n_head_kv = int(config.get("num_key_value_heads") or n_head)
    weights = load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in weights.items():
        for hf_part, side in ((".lora_A.weight", "a"), (".lora_B.weight", "b")):
            if key.endswith(hf_part):
                module = key[: -len(hf_part)].removeprefix("base_model.model.")
                pairs.setdefault(module, {})[side] = value.to(torch.float32)
                break
        else:
            raise KogataError(f"adapter tensor {key!r} is not a LoRA A/B matrix", "only plain LoRA adapters on linear layers export to GGUF")
    writer = gguf.GGUFWriter(str(out_file), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    n_params = 0
    for module in sorted(pairs):
        ab = pairs[module]
        if set(ab) != {"a", "b"}:
            raise KogataError(f"adapter for {module} lacks its lora_{'A' if 'a' not in ab else 'B'} matrix", "the adapter file is incomplete")
        a, b = ab["a"], ab["b"]
        if arch == gguf.MODEL_ARCH.LLAMA and module.endswith("q_proj"):
            b = rope_rows_to_interleaved(b, n_head)
        elif arch == gguf.MODEL_ARCH.LLAMA and module.endswith("k_proj"):
            b = rope_rows_to_interleaved(b, n_head_kv)
        base_name = gguf_tensor_name(name_map, module + ".weight", arch)
        for suffix, t in ((".lora_a", a), (".lora_b", b)):
            writer.add_tensor(base_name + suffix, np.ascontiguousarray(t.numpy().astype(_DTYPES[out_type])))
            n_params += t.numel()
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"architecture": gguf.MODEL_ARCH_NAMES[arch], "alpha": alpha, "rank": int(conf["r"]), "n_pairs": len(pairs), "n_params": n_params, "out_type": out_type}
