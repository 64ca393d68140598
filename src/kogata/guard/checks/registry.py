"""The check registry: each built-in check is a small class registered by name with ``@register_check``.

A check declares its options as a pydantic model (unknown keys are errors), scans a text with
``scan(text, ctx) -> list[Hit]`` and says whether its hits make its action apply (``evaluate``). Checks that can
run on a growing stream (``streamable``) also say how much of the tail could still become a hit (``hold_from``).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from kogata.guard.verdict import CheckResult, GuardContext, Hit

CHECKS: dict[str, type[Check]] = {}


class CheckOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Check:
    name: ClassVar[str] = ""
    Options: ClassVar[type[CheckOptions]] = CheckOptions
    redactable: ClassVar[bool] = False  # its spans can be replaced by placeholders (action: redact)
    streamable: ClassVar[bool] = False  # it can judge a stream prefix; see hold_from

    def __init__(self, options: CheckOptions | None = None):
        self.options = options if options is not None else self.Options()

    def scan(self, text: str, ctx: GuardContext) -> list[Hit]:
        raise NotImplementedError

    def evaluate(self, text: str, ctx: GuardContext, action: str) -> CheckResult:
        hits = self.scan(text, ctx)
        return CheckResult(self.name, action, bool(hits), hits)

    def hold_from(self, text: str) -> int:
        """The earliest index from which the tail of a stream prefix could still become (part of) a hit."""
        return len(text)


def register_check(name: str):
    """Class decorator: ``@register_check("pii")``."""

    def deco(cls: type[Check]) -> type[Check]:
        if name in CHECKS and CHECKS[name] is not cls:
            raise ValueError(f"guard check {name!r} is already registered")
        cls.name = name
        CHECKS[name] = cls
        return cls

    return deco
