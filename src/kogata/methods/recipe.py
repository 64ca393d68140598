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

from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from kogata.core.errors import KogataError
from kogata.artifacts.artifact import Artifact
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


def run_recipe(artifact: Artifact, steps: list[dict[str, Any]], ctx: MethodContext, final_name: str | None = None) -> list[Artifact]:
    """Apply each step to the previous result; every intermediate is an artifact. Returns them in order."""
    from kogata.methods.registry import build_config, check_input_kind

    if steps:
        check_input_kind(artifact, steps[0]["method"])
    for step in steps:  # validate every config before the first (possibly long) step runs
        build_config(get_method(step["method"]), step.get("params") or {})
    produced: list[Artifact] = []
    current = artifact
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        name = step.get("name") or (final_name if last else None)
        ctx.log(f"step {i + 1}/{len(steps)}: {step['method']} on {current.name}")
        current = apply_method(current, step["method"], step.get("params") or {}, replace(ctx, out_name=name))
        produced.append(current)
    return produced
