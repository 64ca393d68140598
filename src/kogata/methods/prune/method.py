"""``prune-depth`` and ``prune-width``: structured pruning of decoder-only LMs (hf → hf), chosen by measured importance.

Both methods edit the safetensors weights and ``config.json`` directly (no re-initialisation), write a plain HF
folder that ``AutoModelForCausalLM.from_pretrained`` loads (checked before committing: no missing or unexpected
tensors), and that ``export-gguf`` converts. Supported layouts: llama, gemma3 (text) and qwen2.

Calibration text: the ``--data`` texts (tokenised, EOS between documents, cut into ``calib_seq_len`` windows, at
most ``calib_tokens`` tokens). Without data the model's own samples are used (temperature 1, seeded): they show
what the model does on its own distribution, which is a fair but weaker guide than your texts. The step records
which source was used (``metrics.calibration``).

``prune-depth`` removes whole decoder blocks: ``layers`` (explicit indices), or the ``n_remove`` least important
blocks, or as few blocks as needed to keep at most ``target_ratio`` of the parameters. Importance ``metric``:
``block-influence`` (1 − cos(block input, block output), averaged over tokens; ShortGPT) or ``loss`` (the rise of
the calibration loss when the block alone is skipped). ``layer_types`` (gemma3 sliding/full, qwen2) is sliced with
the layers; for gemma3 the most important sliding-window block is always kept (llama.cpp's gemma3 cannot run
without one). The step's metrics record ``kept_layers`` (indices in the parent): ``distill`` uses them to align
hidden states with the teacher.

``prune-width`` keeps ``mlp_ratio`` of the MLP intermediate channels (by mean |act(gate)·up| on calibration
text, Minitron-style; rounded to a multiple of ``round_to`` so that quantization blocks fit) and ``heads_ratio``
of the attention heads, by the norm of each head's contribution to the residual stream. Grouped-query attention
stays valid: ``heads_unit=query`` keeps the same number of query heads in every KV group (the best ones of each
group), ``heads_unit=group`` removes whole KV groups (a KV head with all its query heads). ``head_dim`` is written
explicitly into the config, because ``hidden_size / num_attention_heads`` no longer equals it (llama and gemma3 in
llama.cpp honour it; its qwen2 graph does not, so qwen2 heads are not pruned, only MLP channels). Counts are uniform
across layers (one ``intermediate_size``/head count per config); which channels/heads are kept differs per layer.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

import kogata.methods.prune.importance as imp
from kogata.artifacts.artifact import Artifact
from kogata.core.errors import KogataError
from kogata.methods.registry import MethodContext, new_step, register_method
from kogata.methods.search_space import SearchSpace, SpaceContext, enabled

WEIGHT_FILES = re.compile(r".*\.safetensors$|^model\.safetensors\.index\.json$|^pytorch_model.*\.bin$")
LAYER_KEY = re.compile(r"^(model\.layers\.)(\d+)(\..+)$")
SKIP_COPY = {"kogata.json", "config.json"}
NO_HEAD_PRUNING = {"qwen2"}  # llama.cpp sizes qwen2's attention by hidden_size (checked with llama-cpp-python 0.3.36)


# ---- configs ---------------------------------------------------------------------------------------------------
@dataclass
class PruneDepthConfig:
    n_remove: int | None = None  # remove this many blocks (least important first)
    target_ratio: float | None = None  # or: keep at most this fraction of the parameters
    layers: list[int] | None = None  # or: remove exactly these block indices (0-based)
    metric: Literal["block-influence", "loss"] = "block-influence"
    calib_tokens: int = 2048
    calib_seq_len: int = 256

    requires_data = False  # texts help; without them the model's own samples are the calibration set

    def validate(self) -> None:
        given = [x for x in (self.n_remove, self.target_ratio, self.layers) if x is not None]
        if len(given) != 1:
            raise KogataError(
                "prune-depth needs exactly one of n_remove, target_ratio or layers",
                "e.g. --set n_remove=4, --set target_ratio=0.67 or --set layers=10,11,12",
            )
        if self.n_remove is not None and self.n_remove < 1:
            raise KogataError(f"n_remove must be at least 1, got {self.n_remove}", "remove one block or more")
        if self.target_ratio is not None and not 0 < self.target_ratio <= 1:
            raise KogataError(f"target_ratio must be in (0, 1], got {self.target_ratio}", "it is the fraction of parameters to keep, e.g. 0.67")
        if self.layers is not None and (not self.layers or min(self.layers) < 0 or len(set(self.layers)) != len(self.layers)):
            raise KogataError(f"layers must be distinct non-negative block indices, got {self.layers}", "e.g. --set layers=10,11,12")
        _check_calibration(self.calib_tokens, self.calib_seq_len)


@dataclass
class PruneWidthConfig:
    mlp_ratio: float = 1.0  # share of MLP intermediate channels to keep
    heads_ratio: float = 1.0  # share of attention (query) heads to keep
    heads_unit: Literal["query", "group"] = "query"  # query heads uniformly per KV group, or whole KV groups
    round_to: int = 32  # kept MLP channels are a multiple of this (GGUF quant blocks are 32 or 256 wide)
    calib_tokens: int = 2048
    calib_seq_len: int = 256

    requires_data = False

    def validate(self) -> None:
        for key in ("mlp_ratio", "heads_ratio"):
            value = getattr(self, key)
            if not 0 < value <= 1:
                raise KogataError(f"{key} must be in (0, 1], got {value}", f"{key} is the share to keep, e.g. 0.5; 1 keeps all")
        if self.mlp_ratio == 1 and self.heads_ratio == 1:
            raise KogataError("prune-width with mlp_ratio=1 and heads_ratio=1 removes nothing", "set mlp_ratio and/or heads_ratio below 1")
        if self.round_to < 1:
            raise KogataError(f"round_to must be at least 1, got {self.round_to}", "use 1 for no rounding")
        _check_calibration(self.calib_tokens, self.calib_seq_len)


def _check_calibration(tokens: int, seq_len: int) -> None:
    if tokens < 2 or seq_len < 2:
        raise KogataError("calib_tokens and calib_seq_len must be at least 2", "e.g. calib_tokens=2048 calib_seq_len=256")


# ---- prune-depth -----------------------------------------------------------------------------------------------
def _check_search_section(section: dict[str, Any], ctx: SpaceContext) -> None:
    for r in section.get("keep_ratios", []) or []:
        if not isinstance(r, (int, float)) or not 0 < r < 1:
            raise KogataError(f"{ctx.where}: search.prune_depth.keep_ratios has {r!r}",
                              "ratios of parameters to keep, strictly between 0 and 1, e.g. [0.75]")


# `kogata optimize` proposes "prune N% + distill + <weight type>" when enabled: prune, then distill from the base
PRUNE_DEPTH_SPACE = SearchSpace(
    key="prune_depth", family="prune", effort=4, build_s=120,
    help="depth pruning + distillation: {enabled: false, keep_ratios: [0.75], distill_minutes: 10}",
    default={"enabled": False, "keep_ratios": [0.75], "distill_minutes": 10},
    values=lambda section, ctx: [{"ratio": r, "minutes": float(section.get("distill_minutes", 10))}
                                 for r in section.get("keep_ratios", [0.75])] if enabled(section, ctx) else [],
    steps=lambda v, ctx: [{"method": "prune-depth", "params": {"target_ratio": v["ratio"]}},
                          {"method": "distill", "params": {"teacher": ctx.base, "max_minutes": v["minutes"]}}],
    label=lambda v: f"prune {v['ratio']:.0%} + distill",
    keep_ratio=lambda v: float(v["ratio"]),
    extra_minutes=lambda v: v["minutes"],
    validate=_check_search_section,
)


@register_method(
    "prune-depth",
    PruneDepthConfig,
    input_formats=("hf",),
    summary="remove whole decoder blocks, least important first (block influence or loss), or named ones",
    uses_data=True,
    search_space=PRUNE_DEPTH_SPACE,
)
def prune_depth(artifact: Artifact, cfg: PruneDepthConfig, ctx: MethodContext) -> Artifact:
    started = time.time()
    src = artifact.path
    config = read_config(src)
    n_layers = int(config["num_hidden_layers"])
    tensors = read_tensors(src)
    total = sum(t.numel() for t in tensors.values())
    per_layer = [sum(t.numel() for k, t in tensors.items() if _layer_of(k) == i) for i in range(n_layers)]
    metrics: dict[str, Any] = {"n_layers_before": n_layers, "params_before": total}
    layer_types = _layer_types(src, config, n_layers)
    sliding = [i for i, t in enumerate(layer_types or []) if t == "sliding_attention"]
    model = tok = batches = None
    if cfg.layers is not None:
        bad = [i for i in cfg.layers if i >= n_layers]
        if bad:
            raise KogataError(f"layers {bad} do not exist: {artifact.name} has {n_layers} blocks (0…{n_layers - 1})", "give indices below the block count")
        if len(cfg.layers) >= n_layers:
            raise KogataError(f"cannot remove all {n_layers} blocks of {artifact.name}", "keep at least one block")
        if config.get("model_type") == "gemma3_text" and sliding and set(sliding) <= set(cfg.layers):
            raise KogataError(f"removing layers {sorted(cfg.layers)} leaves {artifact.name} without a sliding-window block, which llama.cpp cannot run",
                              f"keep at least one of the sliding_attention blocks {sliding}")
        remove = sorted(cfg.layers)
    else:
        if cfg.n_remove is not None and cfg.n_remove >= n_layers:
            raise KogataError(
                f"cannot remove {cfg.n_remove} blocks: {artifact.name} has {n_layers}",
                f"n_remove must be at most {n_layers - 1}",
            )
        model, tok, batches, source = _calibrate(artifact, cfg, ctx)
        advance = ctx.task(f"prune-depth: {cfg.metric} of {n_layers} blocks", 1)
        if cfg.metric == "block-influence":
            scores = imp.block_influence(model, batches)
        else:
            scores = imp.skip_loss_increase(model, batches)
        advance(1)
        order = sorted(range(n_layers), key=lambda i: (scores[i], i))
        if config.get("model_type") == "gemma3_text" and sliding:  # llama.cpp's gemma3 needs a sliding-window block
            order.remove(max(sliding, key=lambda i: (scores[i], i)))
            order.append(max(sliding, key=lambda i: (scores[i], i)))
        n = cfg.n_remove if cfg.n_remove is not None else _layers_for_ratio(order, per_layer, total, cfg.target_ratio, artifact.name)
        remove = sorted(order[:n])
        metrics.update(importance=[round(s, 6) for s in scores], metric=cfg.metric, calibration=source,
                       calib_tokens=sum(b.numel() for b in batches))
    kept = [i for i in range(n_layers) if i not in remove]
    new_tensors = {}
    for key, t in tensors.items():
        m = LAYER_KEY.match(key)
        if m is None:
            new_tensors[key] = t
        elif int(m.group(2)) in kept:
            new_tensors[f"{m.group(1)}{kept.index(int(m.group(2)))}{m.group(3)}"] = t
    new_config = dict(config, num_hidden_layers=len(kept))
    if layer_types is not None:
        new_config["layer_types"] = [layer_types[i] for i in kept]
    params_after = sum(t.numel() for t in new_tensors.values())
    metrics.update(kept_layers=kept, removed_layers=remove, n_layers_after=len(kept), params_after=params_after,
                   params_kept_ratio=round(params_after / total, 4))
    ctx.log(f"prune-depth: removing blocks {remove} of {n_layers}; keeping {params_after / total:.1%} of the parameters")
    return _commit(artifact, ctx, cfg, started, "prune-depth", new_tensors, new_config, metrics, model, batches,
                   ctx.artifact_name(f"{artifact.name}.depth{len(kept)}"))


def _layers_for_ratio(order: list[int], per_layer: list[int], total: int, ratio: float, name: str) -> int:
    """The fewest blocks (taken in ``order``) whose removal leaves at most ``ratio`` of the parameters."""
    left = total
    for n, i in enumerate(order[:-1], start=1):
        left -= per_layer[i]
        if left <= ratio * total + 1e-9:
            return n
    floor = (total - sum(per_layer[i] for i in order[:-1])) / total
    raise KogataError(
        f"target_ratio={ratio} cannot be reached by removing blocks of {name}: with one block left it keeps {floor:.1%} of its parameters",
        f"choose target_ratio ≥ {floor:.2f} (embeddings are not pruned), or combine with trim-vocab / prune-width",
    )


def _layer_of(key: str) -> int | None:
    m = LAYER_KEY.match(key)
    return int(m.group(2)) if m else None


def _layer_types(src: Path, config: dict[str, Any], n_layers: int) -> list[str] | None:
    if isinstance(config.get("layer_types"), list):
        return list(config["layer_types"])
    from transformers import AutoConfig

    derived = getattr(AutoConfig.from_pretrained(src), "layer_types", None)  # e.g. from an older sliding_window_pattern
    return list(derived) if isinstance(derived, list) and len(derived) == n_layers else None


# ---- prune-width -----------------------------------------------------------------------------------------------
@register_method(
    "prune-width",
    PruneWidthConfig,
    input_formats=("hf",),
    summary="shrink MLP channels (mean |activation|) and attention heads (output norm), GQA-aware",
    uses_data=True,
)
def prune_width(artifact: Artifact, cfg: PruneWidthConfig, ctx: MethodContext) -> Artifact:
    started = time.time()
    src = artifact.path
    config = read_config(src)
    n_layers = int(config["num_hidden_layers"])
    inter = int(config["intermediate_size"])
    n_heads = int(config["num_attention_heads"])
    n_kv = int(config.get("num_key_value_heads") or n_heads)
    head_dim = int(config.get("head_dim") or config["hidden_size"] // n_heads)
    keep_ch = _mlp_keep(inter, cfg.mlp_ratio, cfg.round_to)
    keep_kv, per_group, unit = _heads_keep(n_heads, n_kv, cfg.heads_ratio, cfg.heads_unit)
    if keep_ch == inter and keep_kv * per_group == n_heads:
        raise KogataError(
            f"prune-width with mlp_ratio={cfg.mlp_ratio}, heads_ratio={cfg.heads_ratio} removes nothing from {artifact.name} "
            f"({inter} channels rounded to {cfg.round_to}, {n_heads} heads in {n_kv} KV groups)",
            "lower the ratios (or round_to)",
        )
    if keep_kv * per_group < n_heads and config.get("model_type") in NO_HEAD_PRUNING:
        raise KogataError(f"cannot prune attention heads of a {config['model_type']} model: llama.cpp's {config['model_type']} graph "
                          "needs num_attention_heads × head_dim = hidden_size, so the result could not be exported to GGUF",
                          "prune only the MLP (heads_ratio=1), or prune depth")
    tensors = read_tensors(src)
    total = sum(t.numel() for t in tensors.values())
    model, tok, batches, source = _calibrate(artifact, cfg, ctx)
    advance = ctx.task("prune-width: activation statistics", 1)
    ch_scores = imp.mlp_channel_importance(model, batches) if keep_ch < inter else None
    head_scores = imp.head_importance(model, batches, n_heads, head_dim) if keep_kv * per_group < n_heads else None
    advance(1)
    g = n_heads // n_kv
    kept_heads, kept_channels = [], []
    for i in range(n_layers):
        p = f"model.layers.{i}."
        if ch_scores is not None:
            ch = torch.topk(ch_scores[i], keep_ch).indices.sort().values
            kept_channels.append(ch.tolist())
            for name in ("gate_proj", "up_proj"):
                _take(tensors, f"{p}mlp.{name}.weight", ch, 0)
                _take(tensors, f"{p}mlp.{name}.bias", ch, 0)
            _take(tensors, f"{p}mlp.down_proj.weight", ch, 1)
        if head_scores is not None:
            q_heads, kv_heads = _choose_heads(head_scores[i], g, keep_kv, per_group, unit)
            kept_heads.append(q_heads)
            q_rows, kv_rows = _rows(q_heads, head_dim), _rows(kv_heads, head_dim)
            for name, rows in (("q_proj", q_rows), ("k_proj", kv_rows), ("v_proj", kv_rows)):
                _take(tensors, f"{p}self_attn.{name}.weight", rows, 0)
                _take(tensors, f"{p}self_attn.{name}.bias", rows, 0)
            _take(tensors, f"{p}self_attn.o_proj.weight", q_rows, 1)
    new_config = dict(config, intermediate_size=keep_ch, num_attention_heads=keep_kv * per_group,
                      num_key_value_heads=keep_kv, head_dim=head_dim)
    params_after = sum(t.numel() for t in tensors.values())
    metrics: dict[str, Any] = {
        "calibration": source, "calib_tokens": sum(b.numel() for b in batches), "params_before": total,
        "params_after": params_after, "params_kept_ratio": round(params_after / total, 4),
        "intermediate_size": [inter, keep_ch], "num_attention_heads": [n_heads, keep_kv * per_group],
        "num_key_value_heads": [n_kv, keep_kv], "heads_unit": unit, "kept_heads": kept_heads,
    }
    ctx.log(f"prune-width: MLP {inter}→{keep_ch} channels, heads {n_heads}→{keep_kv * per_group} (KV {n_kv}→{keep_kv}); "
            f"keeping {params_after / total:.1%} of the parameters")
    name = ctx.artifact_name(f"{artifact.name}.width{params_after * 100 // total}")
    return _commit(artifact, ctx, cfg, started, "prune-width", tensors, new_config, metrics, model, batches, name)


def _mlp_keep(inter: int, ratio: float, round_to: int) -> int:
    k = max(1, round(inter * ratio))
    if round_to > 1 and inter >= round_to:
        k = max(round_to, round(k / round_to) * round_to)
    return min(k, inter)


def _heads_keep(n_heads: int, n_kv: int, ratio: float, unit: str) -> tuple[int, int, str]:
    """(KV heads kept, query heads per KV head, unit actually used)."""
    if n_heads % n_kv:
        raise KogataError(f"num_attention_heads={n_heads} is not a multiple of num_key_value_heads={n_kv}", "the config is inconsistent")
    g = n_heads // n_kv
    if unit == "query" and g > 1:
        return n_kv, max(1, round(g * ratio)), "query"
    return max(1, round(n_kv * ratio)), g, "group"  # plain multi-head attention: a query head is a KV group


def _choose_heads(scores: torch.Tensor, g: int, keep_kv: int, per_group: int, unit: str) -> tuple[list[int], list[int]]:
    """Kept query heads (in new order: group by group) and kept KV heads, from per-query-head scores."""
    groups = scores.reshape(-1, g)
    if unit == "query":
        q = []
        for j in range(groups.shape[0]):
            best = sorted(torch.topk(groups[j], per_group).indices.tolist())
            q.extend(j * g + r for r in best)
        return q, list(range(groups.shape[0]))
    kv = sorted(torch.topk(groups.sum(1), keep_kv).indices.tolist())
    return [j * g + r for j in kv for r in range(g)], kv


def _rows(heads: list[int], head_dim: int) -> torch.Tensor:
    return torch.tensor([h * head_dim + d for h in heads for d in range(head_dim)], dtype=torch.long)


def _take(tensors: dict[str, torch.Tensor], key: str, index: torch.Tensor, dim: int) -> None:
    if key in tensors:
        tensors[key] = tensors[key].index_select(dim, index).contiguous()


# ---- shared ----------------------------------------------------------------------------------------------------
def _calibrate(artifact: Artifact, cfg: Any, ctx: MethodContext) -> tuple[Any, Any, list[torch.Tensor], str]:
    from kogata.artifacts.load import load_torch
    from kogata.methods._shared.texts import read_texts

    model, tok = load_torch(artifact)
    texts = read_texts(ctx.data) if ctx.data else []
    torch.manual_seed(ctx.seed)
    batches, source = imp.calibration_batches(model, tok, texts, tokens=cfg.calib_tokens, seq_len=cfg.calib_seq_len, seed=ctx.seed)
    ctx.log(f"calibration: {sum(b.numel() for b in batches)} tokens ({source})")
    return model, tok, batches, source


def _commit(artifact: Artifact, ctx: MethodContext, cfg: Any, started: float, method: str, tensors: dict[str, torch.Tensor],
            config: dict[str, Any], metrics: dict[str, Any], model: Any, batches: list[torch.Tensor] | None, name: str) -> Artifact:
    with ctx.store.stage() as st:
        write_model(st.dir, tensors, config, artifact.path)
        pruned = load_checked(st.dir)
        if model is not None and batches:
            metrics["calib_loss_before"] = round(imp.lm_loss(model, batches), 5)
            metrics["calib_loss_after"] = round(imp.lm_loss(pruned, batches), 5)
        step = new_step(method, cfg, ctx, started, metrics=metrics)
        return st.commit(format="hf", name=name, parent=artifact, step=step, architecture=artifact.architecture)


def read_config(folder: Path) -> dict[str, Any]:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise KogataError(f"no config.json in {folder}", "point at a Hugging Face model folder")
    return json.loads(path.read_text(encoding="utf-8"))


def read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise KogataError(f"no *.safetensors weights in {folder}", "pruning reads safetensors only; re-save the model with save_pretrained")
    out: dict[str, torch.Tensor] = {}
    for f in files:
        out.update(load_file(f))
    return out


def write_model(dst: Path, tensors: dict[str, torch.Tensor], config: dict[str, Any], src: Path) -> None:
    """Write weights (one safetensors file), config.json and the source folder's tokenizer/template files."""
    from safetensors.torch import save_file

    copy_side_files(src, dst)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(dst / "model.safetensors"), metadata={"format": "pt"})
    (dst / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def copy_side_files(src: Path, dst: Path) -> None:
    """Tokenizer, chat template and generation config: every file except weights, config.json and the manifest."""
    for f in Path(src).iterdir():
        if f.is_file() and f.name not in SKIP_COPY and not WEIGHT_FILES.match(f.name):
            shutil.copyfile(f, Path(dst) / f.name)


def load_checked(folder: Path) -> Any:
    """Load with plain transformers; any missing/unexpected tensor is a bug in the surgery."""
    from transformers import AutoModelForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if problems:
        raise KogataError(f"the pruned model does not load cleanly: {problems}", "this is a bug in kogata's pruning; please report it")
    return model.eval()
