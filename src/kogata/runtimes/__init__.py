"""Runtimes: ways to execute an artifact, registered by name (see :mod:`kogata.runtimes.registry`)."""

from kogata.runtimes.base import Runtime
from kogata.runtimes.registry import RUNTIMES, get_runtime_class, open_runtime, register_runtime, runtime_names

__all__ = ["RUNTIMES", "Runtime", "get_runtime_class", "open_runtime", "register_runtime", "runtime_names"]
