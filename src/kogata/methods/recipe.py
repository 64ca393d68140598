"""Recipes: an ordered list of method steps, as data (YAML/JSON), replayable.

```yaml
version: 1
name: trim-and-q4
steps:
  - method: trim-vocab
    params: {keep: [hiragana, katakana]}
  - method: export-gguf
    params: {out_type: f16}
  - method: quantize
    params: {type: Q4_K_M}
    name: support-bot-q4      # optional: the artifact name of this step
```
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from kogata.artifacts.artifact import Artifact
from kogata.core.errors import KogataError
from kogata.methods.registry import MethodContext, apply_method, get_method

STEP_KEYS = {"method", "params", "name"}
RECIPE_KEYS = {"version", "name", "description", "steps"}


def load_recipe(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise KogataError(f"recipe {path} does not exist", "give the path of a recipe YAML file")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise KogataError(f"recipe {path} is not valid YAML ({str(exc).splitlines()[0]})", "fix the YAML syntax") from None
    if isinstance(doc, list):
        doc = {"steps": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("steps"), list) or not doc["steps"]:
        raise KogataError(f"recipe {path} has no steps", "write `steps:` with a list of {method: NAME, params: {...}}")
    unknown = set(doc) - RECIPE_KEYS
    if unknown:
        raise KogataError(f"recipe {path}: unknown key(s) {sorted(unknown)}", f"valid keys: {', '.join(sorted(RECIPE_KEYS))}")
    return validate_steps(doc["steps"], where=str(path)) and doc


def validate_steps(steps: list[Any], where: str = "recipe") -> list[dict[str, Any]]:
    for i, step in enumerate(steps, 1):
        if isinstance(step, str):
            steps[i - 1] = step = {"method": step}
        if not isinstance(step, dict) or "method" not in step:
            raise KogataError(f"{where}: step {i} has no `method`", "each step is {method: NAME, params: {...}}")
        unknown = set(step) - STEP_KEYS
        if unknown:
            raise KogataError(f"{where}: step {i} has unknown key(s) {sorted(unknown)}", f"valid keys: {', '.join(sorted(STEP_KEYS))}")
        get_method(step["method"])  # unknown method → error listing the valid ones, before any work
        if step.get("params") is not None and not isinstance(step["params"], dict):
            raise KogataError(f"{where}: step {i} params must be a mapping", "write params: {key: value}")
    return steps


# A method whose config needs another input format than the artifact it is given gets the conversion first
# (``kogata compress ART-hf -m quantize --set type=Q8_0`` exports to GGUF, then quantizes). A config says what it
# needs with ``input_format() -> "hf" | "gguf"``; a missing bridge leaves the method to refuse with its own error.
FORMAT_BRIDGES: dict[tuple[str, str], dict[str, Any]] = {
    ("hf", "gguf"): {"method": "export-gguf", "params": {"out_type": "f32"}},
}


@dataclass
class RecipeStep:
    """One step that ran: the step as given (or the conversion added before ``added_for``) and its artifact."""

    step: dict[str, Any]
    artifact: Artifact
    added_for: str | None = None  # the method this conversion was added for; None: a step of the recipe


def bridge_step(artifact: Artifact, step: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The format ``step`` needs and the conversion step that makes it from ``artifact``, or None."""
    from kogata.methods.registry import build_config

    cfg = build_config(get_method(step["method"]), step.get("params") or {})
    wants = cfg.input_format() if callable(getattr(cfg, "input_format", None)) else None
    if wants is None or wants == artifact.format:
        return None
    bridge = FORMAT_BRIDGES.get((artifact.format, wants))
    return (wants, bridge) if bridge is not None else None


def run_steps(artifact: Artifact, steps: list[dict[str, Any]], ctx: MethodContext, final_name: str | None = None) -> list[RecipeStep]:
    """Apply each step to the previous result, adding a format conversion where a step needs one (recorded in
    the lineage like any step). Every intermediate is an artifact; returned in order with the step that made it."""
    from kogata.methods.registry import build_config, check_input_kind

    if steps:
        check_input_kind(artifact, steps[0]["method"])
    for step in steps:  # validate every config before the first (possibly long) step runs
        build_config(get_method(step["method"]), step.get("params") or {})
    done: list[RecipeStep] = []
    current = artifact
    for i, step in enumerate(steps):
        needed = bridge_step(current, step)
        if needed is not None:
            wants, bridge = needed[0], {**needed[1], "params": dict(needed[1]["params"])}
            params = ", ".join(f"{k}={v}" for k, v in bridge["params"].items())
            ctx.log(f"step {i + 1}/{len(steps)}: {step['method']} {_params_text(step)} needs a {wants} artifact "
                    f"and {current.name} is {current.format}: running {bridge['method']} ({params}) first")
            current = apply_method(current, bridge["method"], bridge["params"], replace(ctx, out_name=None))
            done.append(RecipeStep(bridge, current, added_for=step["method"]))
        last = i == len(steps) - 1
        name = step.get("name") or (final_name if last else None)
        ctx.log(f"step {i + 1}/{len(steps)}: {step['method']} on {current.name}")
        current = apply_method(current, step["method"], step.get("params") or {}, replace(ctx, out_name=name))
        done.append(RecipeStep(step, current))
    return done


def run_recipe(artifact: Artifact, steps: list[dict[str, Any]], ctx: MethodContext, final_name: str | None = None) -> list[Artifact]:
    """:func:`run_steps`, returning only the artifacts (every intermediate, the last one is the result)."""
    return [s.artifact for s in run_steps(artifact, steps, ctx, final_name)]


def _params_text(step: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in (step.get("params") or {}).items())
