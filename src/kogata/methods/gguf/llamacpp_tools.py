"""llama.cpp's own command-line tools: ``llama-quantize``, ``llama-imatrix``, ``llama-perplexity``, ``llama-server``.

``make llama-tools`` builds them with cmake from the llama.cpp tree vendored in the pinned llama-cpp-python sdist,
i.e. exactly the llama.cpp the ``llamacpp`` runtime runs, into ``<venv>/llama.cpp-tools/bin`` (next to the
Python that runs kogata: ``sys.prefix``), with ``source.json`` beside it (llama-cpp-python version, llama.cpp
commit, sdist sha256). ``KOGATA_LLAMA_TOOLS`` names another folder holding the binaries.

:func:`tool_versions` is what a lineage step records for a step that ran one of them; :func:`run_tool` runs one
with its output captured and turns a missing binary or a failure into a one-line :class:`KogataError`.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

from kogata.core.errors import KogataError

TOOLS = ("llama-quantize", "llama-imatrix", "llama-perplexity", "llama-server")
ENV_VAR = "KOGATA_LLAMA_TOOLS"
BUILD_HINT = "run `make llama-tools` (builds them once from the pinned llama-cpp-python source, ~7 min on 2 cores)"


def tools_dir() -> Path:
    """Where the binaries are looked for: ``$KOGATA_LLAMA_TOOLS``, else ``<sys.prefix>/llama.cpp-tools/bin``."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path(sys.prefix) / "llama.cpp-tools" / "bin"


def find_tool(name: str) -> Path:
    """The path of tool ``name`` (one of :data:`TOOLS`), or a KogataError saying how to get it."""
    if name not in TOOLS:
        raise ValueError(f"unknown llama.cpp tool {name!r}")
    folder = tools_dir()
    path = folder / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        where = f"{ENV_VAR}={folder}" if os.environ.get(ENV_VAR) else str(folder)
        raise KogataError(f"llama.cpp tool {name} is not installed (looked in {where})", BUILD_HINT)
    return path


def available(name: str) -> bool:
    try:
        find_tool(name)
    except KogataError:
        return False
    return True


def tool_versions() -> dict[str, str]:
    """``{"llama.cpp-tools": "<version line> …"}``: the build the tools come from (``llama-perplexity --version``:
    llama.cpp version, build number, commit, compiler) and the llama-cpp-python sdist it was built from."""
    path = find_tool("llama-perplexity")
    stat = path.stat()
    return dict(_versions(str(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _versions(path: str, _mtime: int, _size: int) -> tuple[tuple[str, str], ...]:
    proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
    lines = [x.strip() for x in (proc.stdout + proc.stderr).splitlines() if x.strip()]
    version = next((x.removeprefix("version: ") for x in lines if x.startswith("version:")), "unknown")
    built = next((x for x in lines if x.startswith("built with")), "")
    source = Path(path).parent.parent / "source.json"
    origin = ""
    if source.is_file():
        try:
            facts = json.loads(source.read_text(encoding="utf-8"))
            origin = f"; from llama-cpp-python {facts.get('llama_cpp_python')} sdist (sha256 {str(facts.get('sdist_sha256'))[:12]}…)"
        except (OSError, ValueError):
            pass
    return (("llama.cpp-tools", f"{version}{'; ' + built if built else ''}{origin}"),)


def run_tool(name: str, args: list[str], *, what: str, hint: str, timeout: float | None = None) -> str:
    """Run tool ``name`` with ``args``; return its stdout+stderr. A non-zero exit becomes a KogataError naming
    ``what`` failed, the last lines the tool printed, and ``hint``."""
    path = find_tool(name)
    try:
        proc = subprocess.run([str(path), *args], capture_output=True, text=True, errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired:
        raise KogataError(f"{what}: {name} did not finish within {timeout:.0f}s", hint) from None
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise KogataError(f"{what}: {name} failed (exit {proc.returncode}): {tail(output)}", hint)
    return output


def tail(output: str, n: int = 3) -> str:
    """The last ``n`` non-empty lines of a tool's output, joined on one line (for one-line errors)."""
    lines = [x.strip() for x in output.splitlines() if x.strip()]
    return " | ".join(lines[-n:]) if lines else "(no output)"
