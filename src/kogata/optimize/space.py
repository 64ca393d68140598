"""The search space of ``kogata optimize``, read from the method registry.

Every method registered with a ``search_space`` (:mod:`kogata.methods.search_space`) is a ``search:`` key of
the project file and is proposed by :func:`kogata.optimize.candidates.generate`. Each method declares its own,
in its ``register_method(...)`` call (``methods/quantize``, ``trim_vocab``, ``lora``, ``prune``); nothing here
names a method but the hf → GGUF conversion the search puts before GGUF steps.
"""

from __future__ import annotations

from typing import Any

from kogata.core.errors import KogataError
from kogata.methods.registry import search_spaces
from kogata.methods.search_space import SearchSpace

BASELINE = {"family": "baseline", "effort": 0, "build_s": 30.0}
# how an hf artifact becomes another format before a step that needs it (the float export, no rounding)
CONVERT = {("hf", "gguf"): [{"method": "export-gguf", "params": {"out_type": "f32"}}]}


def spaces() -> dict[str, SearchSpace]:
    """Project-file key → declaration, for every method the search can propose."""
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
