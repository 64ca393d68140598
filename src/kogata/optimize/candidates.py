"""Candidates: recipes generated from the project's search space, ordered cheapest-to-try first,
and the rules that skip candidates earlier results make pointless."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from kogata.optimize.project import Project

# Approximate bits per weight of llama.cpp types (for size estimates before anything is built)
BITS = {"F32": 32.0, "F16": 16.0, "Q8_0": 8.5, "Q6_K": 6.6, "Q5_K_M": 5.7, "Q5_K_S": 5.5, "Q5_0": 5.5, "Q4_1": 5.0,
        "Q4_K_M": 4.9, "Q4_K_S": 4.6, "Q4_0": 4.5, "Q3_K_M": 3.9, "Q2_K": 2.6, "int8-dynamic": 8.0, "FP32": 32.0}
# Rough time to build each family before its evaluation (seconds), for budget checks
BUILD_S = {"baseline": 30, "quantize": 20, "trim": 90, "lora": 120, "prune": 120}
BASELINE_LABEL = "baseline (float)"  # reports show it in their own language
EFFORT = {"baseline": 0, "quantize": 1, "trim": 2, "lora": 3, "prune": 4}


@dataclass
class Candidate:
    label: str
    family: str  # baseline | quantize | trim | lora | prune
    steps: list[dict[str, Any]]
    quant: str  # final weight type (F32 for the baseline)
    keep_ratio: float | None = 1.0  # share of parameters kept, None = unknown until built
    extra_minutes: float = 0.0  # training time inside the recipe
    key: str = field(default="")

    def __post_init__(self) -> None:
        if not self.key:
            blob = json.dumps(self.steps, sort_keys=True)
            self.key = hashlib.sha256(blob.encode()).hexdigest()[:12]

    @property
    def rel_size(self) -> float | None:
        """Estimated size relative to the fp32 baseline (None when unknown)."""
        if self.keep_ratio is None:
            return None
        return self.keep_ratio * BITS.get(self.quant, 32.0) / 32.0

    @property
    def order(self) -> tuple[int, float]:
        return (EFFORT[self.family], BITS.get(self.quant, 32.0))

    def build_estimate_s(self) -> float:
        return BUILD_S[self.family] + 60.0 * self.extra_minutes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _enabled(section: dict[str, Any], have_data: bool) -> bool:
    flag = section.get("enabled", "auto")
    return have_data if flag == "auto" else bool(flag)


def generate(project: Project) -> list[Candidate]:
    """Every candidate recipe of the search space, cheapest to try first (the baseline first of all)."""
    s = project.search
    llama = project.runtime == "llamacpp"
    to_runtime = [{"method": "export-gguf", "params": {"out_type": "f32"}}] if llama else []
    quants = list(dict.fromkeys(s.quantize))

    def quant_step(q: str) -> dict[str, Any]:
        return {"method": "quantize", "params": {"type": q}}

    out = [Candidate(BASELINE_LABEL, "baseline", to_runtime, "F32")]
    out += [Candidate(q, "quantize", to_runtime + [quant_step(q)], q) for q in quants]
    have_data = bool(project.data)
    if _enabled(s.trim_vocab, have_data):
        params = {k: v for k, v in s.trim_vocab.items() if k != "enabled"}
        trim = {"method": "trim-vocab", "params": params}
        out += [Candidate(f"trim-vocab + {q}", "trim", [trim, *to_runtime, quant_step(q)], q, keep_ratio=None) for q in quants]
    if _enabled(s.lora, have_data):
        cfg = {k: v for k, v in s.lora.items() if k not in ("enabled",)}
        steps = [{"method": "lora", "params": cfg}, {"method": "merge", "params": {}}]
        minutes = float(cfg.get("max_minutes", 10))
        out += [Candidate(f"LoRA + {q}", "lora", [*steps, *to_runtime, quant_step(q)], q, extra_minutes=minutes) for q in quants]
    if _enabled(s.prune_depth, have_data):
        minutes = float(s.prune_depth.get("distill_minutes", 10))
        for ratio in s.prune_depth.get("keep_ratios", [0.75]):
            steps = [
                {"method": "prune-depth", "params": {"target_ratio": ratio}},
                {"method": "distill", "params": {"teacher": project.base, "max_minutes": minutes}},
            ]
            out += [Candidate(f"prune {ratio:.0%} + distill + {q}", "prune", [*steps, *to_runtime, quant_step(q)], q,
                              keep_ratio=float(ratio), extra_minutes=minutes) for q in quants]
    baseline, rest = out[0], sorted(out[1:], key=lambda c: c.order)
    return [baseline, *rest]


def skip_reason(c: Candidate, done: list[dict[str, Any]], base_bytes: int, remaining_s: float, eval_s: float,
                quality_gates: set[str]) -> str | None:
    """Why ``c`` need not be tried given finished candidates (dicts with candidate, verdict, bytes, failed), or None."""
    passing = [d for d in done if d.get("verdict") == "PASS"]
    if c.rel_size is not None and passing:
        est = c.rel_size * base_bytes
        best = min(passing, key=lambda d: d["bytes"])
        if best["bytes"] <= est:
            return f"cannot be smaller than {best['label']}, which already passes every KPI"
    for d in done:
        prev = d["candidate"]
        failed_quality = [g for g in d.get("failed", []) if g in quality_gates]
        if (prev["family"] == c.family and prev["steps"][:-1] == c.steps[:-1] and failed_quality
                and BITS.get(c.quant, 32) < BITS.get(prev["quant"], 32)):
            return f"{prev['label']} already misses {', '.join(failed_quality)}; {c.quant} quantizes harder"
    need = c.build_estimate_s() + eval_s
    if need > remaining_s:
        return f"not enough budget left (needs ~{need / 60:.1f} min, {max(remaining_s, 0) / 60:.1f} min left)"
    return None
