"""Process-wide settings: where the store lives and how many CPU threads every runtime may use."""

from __future__ import annotations

import os
import sys
from pathlib import Path

_threads: int | None = None


def kogata_home() -> Path:
    """``$KOGATA_HOME`` or ``~/.kogata``."""
    return Path(os.environ.get("KOGATA_HOME") or Path.home() / ".kogata").expanduser()


def set_threads(n: int | None) -> int:
    """Fix the CPU thread count for torch, BLAS/OpenMP and llama.cpp. ``None`` keeps the default.

    The one ``--threads`` setting: every runtime reads :func:`get_threads`.
    """
    global _threads
    if n is not None:
        if n < 1:
            from kogata.core.errors import KogataError

            raise KogataError(f"--threads must be at least 1, got {n}", "pass a positive thread count, e.g. --threads 1")
        _threads = n
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(n)
        os.environ["KOGATA_THREADS"] = str(n)
        torch = sys.modules.get("torch")  # only when already loaded: llama.cpp-only processes stay torch-free
        if torch is not None:
            torch.set_num_threads(n)
    return get_threads()


def get_threads() -> int:
    if _threads is not None:
        return _threads
    env = os.environ.get("KOGATA_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, os.cpu_count() or 1)
