"""How a method enters ``kogata optimize``'s search: a small declaration on its registry entry.

``register_method(..., search_space=SearchSpace(...))`` is all a method needs to be proposed by
``kogata.optimize.candidates.generate``; the project file, its typo check, the candidate order and the recipe
steps all read it. Two roles:

- ``"weights"`` — the final weight type (quantize): one candidate per value on the float model, and every
  transform candidate is finished with each value. ``choices(fmt)`` names the values a target artifact format
  can use (GGUF types for ``gguf``, torch types for ``hf``), ``bits(value)`` their approximate bits per weight,
  ``input_format(value)`` the format the step needs (the search exports hf → GGUF first when it is ``gguf``).
- ``"transform"`` — steps on the float hf model before the weight type (trim-vocab, LoRA, pruning), one
  candidate per value × weight type.

``values(section, ctx)`` turns the project's section (``search.<key>``) into the values to try, cheapest first
(``[]``: the section is off); ``steps(value, ctx)`` turns one value into recipe steps
(``[{"method": name, "params": {...}}]``). ``validate(section, ctx)`` raises a ``KogataError`` at project load.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kogata.core.errors import KogataError

Step = dict[str, Any]


@dataclass(frozen=True)
class SpaceContext:
    """What a declaration may look at: the project's base model, target format, and whether data was given."""

    base: str
    target_format: str  # the artifact format the project's runtime runs: gguf (llamacpp) or hf (torch)
    have_data: bool = False
    folder: Path | None = None
    data: tuple[str, ...] = ()  # the project's data files (absolute): what calibrated quantization calibrates on
    where: str = "project"  # for error messages: "<project path>: search.<key>"


def enabled(section: Any, ctx: SpaceContext) -> bool:
    """``enabled: auto`` (the default) means "when the project gives data"; true/false as written."""
    flag = section.get("enabled", "auto") if isinstance(section, dict) else "auto"
    return ctx.have_data if flag == "auto" else bool(flag)


def params_of(section: dict[str, Any], *skip: str) -> dict[str, Any]:
    """A section's method parameters: every key but ``enabled`` (and ``skip``)."""
    return {k: v for k, v in section.items() if k not in ("enabled", *skip)}


def _no_check(section: Any, ctx: SpaceContext) -> None:
    return None


@dataclass(frozen=True)
class SearchSpace:
    key: str  # the project-file key under ``search:``
    help: str  # one line: what the section holds (error hints, docs)
    default: Any  # the section when the project omits it
    values: Callable[[Any, SpaceContext], list[Any]]  # the values to try, cheapest first ([] = off)
    steps: Callable[[Any, SpaceContext], list[Step]]  # one value → its recipe steps
    role: str = "transform"  # "weights" | "transform"
    family: str = ""  # the candidate family in state and reports (default: key)
    effort: int = 2  # order among families (lower is tried first; quantize 1)
    build_s: float = 60.0  # rough seconds to build one candidate, before training minutes
    label: Callable[[Any], str] = str  # a value's label (a transform's label is "<label> + <weight type>")
    keep_ratio: Callable[[Any], float | None] = lambda v: 1.0  # share of parameters kept (None: unknown before building)
    extra_minutes: Callable[[Any], float] = lambda v: 0.0  # training time inside the steps
    input_format: Callable[[Any], str] = lambda v: "hf"  # the artifact format the value's first step takes
    choices: Callable[[str], tuple[str, ...]] = lambda fmt: ()  # weights: the values a target format can use
    bits: Callable[[Any], float] = lambda v: 32.0  # weights: approximate bits per weight of a value
    validate: Callable[[Any, SpaceContext], None] = _no_check
    section_type: type = field(default=dict)  # what the section must be (a list for quantize, a mapping otherwise)

    @property
    def family_name(self) -> str:
        return self.family or self.key

    def check(self, section: Any, ctx: SpaceContext) -> None:
        if not isinstance(section, self.section_type):
            what = "a list" if self.section_type is list else "a mapping"
            raise KogataError(f"{ctx.where}: search.{self.key} must be {what}", f"{self.key}: {self.help}")
        self.validate(section, ctx)
