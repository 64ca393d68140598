"""Candidates: recipes generated from the project's search space, ordered cheapest-to-try first,
and the rules that skip candidates earlier results make pointless."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from kogata.optimize.project import Project
from kogata.optimize.reasons import Reason
from kogata.optimize.space import bits_of, family_info

BASELINE_LABEL = "baseline (float)"  # reports show it in their own language


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
        return self.keep_ratio * bits_of(self.quant) / 32.0

    @property
    def order(self) -> tuple[int, float]:
        return (family_info(self.family)["effort"], bits_of(self.quant))

    def build_estimate_s(self) -> float:
        return family_info(self.family)["build_s"] + 60.0 * self.extra_minutes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def generate(project: Project) -> list[Candidate]:
    """Every candidate recipe of the search space, cheapest to try first (the baseline first of all).

    Read from the method registry (:mod:`kogata.optimize.space`): each weight type of a ``weights``
    declaration (quantize) on the float model, and each value of a ``transform`` declaration (trim-vocab,
    LoRA, pruning) finished with each weight type; steps that need another format get the conversion first."""
    from kogata.optimize.project import space_context
    from kogata.optimize.space import convert_steps, spaces

    ctx = space_context(project)
    declared = spaces()
    to_runtime = convert_steps("hf", ctx.target_format)
    weights = [(sp, q) for sp in declared.values() if sp.role == "weights" for q in sp.values(project.search[sp.key], ctx)]

    def finish(q_space: Any, q: str) -> list[dict[str, Any]]:
        return convert_steps("hf", q_space.input_format(q)) + q_space.steps(q, ctx)

    out = [Candidate(BASELINE_LABEL, "baseline", to_runtime, "F32")]
    out += [Candidate(str(q), sp.family_name, finish(sp, q), str(q)) for sp, q in weights]
    for sp in declared.values():
        if sp.role != "transform":
            continue
        for value in sp.values(project.search[sp.key], ctx):
            head = sp.steps(value, ctx)
            out += [Candidate(f"{sp.label(value)} + {q}", sp.family_name, [*head, *finish(qs, q)], str(q),
                              keep_ratio=sp.keep_ratio(value), extra_minutes=sp.extra_minutes(value)) for qs, q in weights]
    baseline, rest = out[0], sorted(out[1:], key=lambda c: c.order)
    return [baseline, *rest]


def skip_reason(c: Candidate, done: list[dict[str, Any]], base_bytes: int, remaining_s: float, eval_s: float,
                quality_gates: set[str]) -> Reason | None:
    """Why ``c`` need not be tried given finished candidates (dicts with candidate, verdict, bytes, failed), or None."""
    passing = [d for d in done if d.get("verdict") == "PASS"]
    if c.rel_size is not None and passing:
        est = c.rel_size * base_bytes
        best = min(passing, key=lambda d: d["bytes"])
        if best["bytes"] <= est:
            return Reason("reason_smaller_passes", {"label": best["label"]})
    for d in done:
        prev = d["candidate"]
        failed_quality = [g for g in d.get("failed", []) if g in quality_gates]
        if (prev["family"] == c.family and prev["steps"][:-1] == c.steps[:-1] and failed_quality
                and bits_of(c.quant) < bits_of(prev["quant"])):
            return Reason("reason_quantizes_harder", {"label": prev["label"], "gates": ", ".join(failed_quality), "quant": c.quant})
    need = c.build_estimate_s() + eval_s
    if need > remaining_s:
        return Reason("reason_no_budget", {"need_min": need / 60, "left_min": max(remaining_s, 0) / 60})
    return None
