"""The search space of ``kogata optimize``, read from the method registry.

Every method registered with a ``search_space`` (:mod:`kogata.methods.search_space`) is a ``search:`` key of
the project file and is proposed by :func:`kogata.optimize.candidates.generate`. LoRA and depth pruning are
declared here, on their registered methods, until their own modules carry the declaration (a move, not a
change: ``attach_search_space`` is the same entry ``register_method(..., search_space=...)`` makes).
"""

from __future__ import annotations

from typing import Any

from kogata.core.errors import KogataError
from kogata.methods.registry import attach_search_space, get_method, search_spaces
from kogata.methods.search_space import SearchSpace, SpaceContext, enabled, params_of

BASELINE = {"family": "baseline", "effort": 0, "build_s": 30.0}
# how an hf artifact becomes another format before a step that needs it (the float export, no rounding)
CONVERT = {("hf", "gguf"): [{"method": "export-gguf", "params": {"out_type": "f32"}}]}


def _check_prune(section: dict[str, Any], ctx: SpaceContext) -> None:
    for r in section.get("keep_ratios", []) or []:
        if not isinstance(r, (int, float)) or not 0 < r < 1:
            raise KogataError(f"{ctx.where}: search.prune_depth.keep_ratios has {r!r}",
                              "ratios of parameters to keep, strictly between 0 and 1, e.g. [0.75]")


LORA_SPACE = SearchSpace(
    key="lora", family="lora", effort=3, build_s=120,
    help="LoRA fine-tuning on instruction data: {enabled: auto|true|false, data: FILE, max_minutes: 10}",
    default={"enabled": "auto"},
    values=lambda section, ctx: [params_of(section)] if enabled(section, ctx) else [],
    steps=lambda params, ctx: [{"method": "lora", "params": params}, {"method": "merge", "params": {}}],
    label=lambda params: "LoRA",
    extra_minutes=lambda params: float(params.get("max_minutes", 10)),
)

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
    validate=_check_prune,
)


def _declare_builtin() -> None:
    for name, space in (("lora", LORA_SPACE), ("prune-depth", PRUNE_DEPTH_SPACE)):
        try:
            if get_method(name).search_space is None:
                attach_search_space(name, space)
        except KogataError:  # the method is not installed: it is simply not part of the search
            pass


def spaces() -> dict[str, SearchSpace]:
    """Project-file key → declaration, for every method the search can propose."""
    _declare_builtin()
    return {s.key: s for _, s in search_spaces()}


def weights_spaces() -> list[SearchSpace]:
    return [s for s in spaces().values() if s.role == "weights"]


def family_info(family: str) -> dict[str, Any]:
    """Order rank and build estimate of a candidate family (the baseline's, or its declaration's)."""
    if family == BASELINE["family"]:
        return BASELINE
    for s in spaces().values():
        if s.family_name == family:
            return {"family": family, "effort": s.effort, "build_s": s.build_s}
    return {"family": family, "effort": 9, "build_s": 120.0}


def bits_of(quant: str) -> float:
    """Approximate bits per weight of a final weight type (32 for float and anything unknown)."""
    for s in weights_spaces():
        if quant in (*s.choices("gguf"), *s.choices("hf")):
            return s.bits(quant)
    return 32.0


def target_format(runtime: str) -> str:
    """The artifact format a runtime runs natively (its first listed format): gguf for llamacpp, hf for torch."""
    from kogata.runtimes.registry import get_runtime_class

    return get_runtime_class(runtime).formats[0]


def convert_steps(src: str, dst: str) -> list[dict[str, Any]]:
    if src == dst:
        return []
    if (src, dst) not in CONVERT:
        raise KogataError(f"the search cannot turn a {src} artifact into {dst}", "choose another runtime or method values")
    return [dict(s, params=dict(s["params"])) for s in CONVERT[(src, dst)]]
