"""Built-in guard checks, one module each, registered by name (see :mod:`kogata.guard.checks.registry`)."""

from kogata.guard.checks import confidence, format, grounding, injection, pii, terms  # noqa: F401  (registers)
from kogata.guard.checks.registry import CHECKS, Check, CheckOptions, register_check

__all__ = ["CHECKS", "Check", "CheckOptions", "register_check"]
