"""Runtimes: ways to execute an artifact, registered by name.

``open_runtime("torch", artifact, dtype="bfloat16")`` returns an object following
:class:`kogata.runtimes.base.Runtime`. Adding a runtime = one module with a class decorated with
``@register_runtime("name")`` (class attributes ``kind``: ``"lm"`` or ``"embedder"``, ``formats``: the artifact
formats it runs, ``options``: the keyword options its constructor accepts) + one line in ``_BUILTIN`` below.
``get_runtime_class(name).kind`` tells a caller what a runtime can do before loading anything.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from pathlib import Path
from typing import Any

from kogata.artifacts.markers import EMBEDDER_KIND
from kogata.core.errors import KogataError
from kogata.runtimes.base import Runtime

RUNTIMES: dict[str, type] = {}  # filled as runtime modules are imported; runtime_names() lists all known names

# name -> module that registers it (imported on first use so that ``import kogata.runtimes`` stays light)
_BUILTIN = {
    "torch": "kogata.runtimes.torch_runtime",
    "llamacpp": "kogata.runtimes.llamacpp_runtime",
    "llamacpp-engine": "kogata.runtimes.engine.runtime",
    "embedder": "kogata.runtimes.embedder",
    "e5": "kogata.runtimes.e5_runtime",
}


def register_runtime(name: str):
    """Class decorator: make a runtime available to :func:`open_runtime` under ``name``."""

    def deco(cls: type) -> type:
        cls.name = name
        RUNTIMES[name] = cls
        return cls

    return deco


def runtime_names() -> list[str]:
    return sorted(set(RUNTIMES) | set(_BUILTIN))


def get_runtime_class(name: str) -> type:
    if name not in RUNTIMES and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in RUNTIMES:
        close = difflib.get_close_matches(name, runtime_names(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise KogataError(f"unknown runtime {name!r}", f"{hint}valid runtimes: {', '.join(runtime_names())}")
    return RUNTIMES[name]


def open_runtime(name: str, artifact: Any, **options: Any) -> Runtime:
    """Load ``artifact`` (an :class:`~kogata.artifacts.artifact.Artifact` or an artifact folder) into runtime ``name``.

    Raises :class:`KogataError` for an unknown runtime, an option the runtime does not take, an artifact
    whose format the runtime cannot run (nothing is converted silently), or an artifact of the wrong kind
    (an embedder in a language-model runtime, a language model in the embedder runtime).
    """
    cls = get_runtime_class(name)
    artifact = _as_artifact(artifact)
    _check_kind(name, cls, artifact)
    fmt = artifact.format
    if fmt not in cls.formats:
        if name == "llamacpp" and fmt == "hf":
            raise KogataError(
                f"runtime 'llamacpp' runs GGUF files, but artifact {artifact.name} ({artifact.id}) is an hf folder",
                f"export it first with `kogata compress {artifact.name} --method export-gguf` and evaluate the GGUF artifact",
            )
        raise KogataError(
            f"runtime {name!r} cannot run {fmt} artifacts ({artifact.name})",
            f"it runs: {', '.join(cls.formats)}; convert the artifact or pick another runtime",
        )
    unknown = sorted(set(options) - set(cls.options))
    if unknown:
        raise KogataError(
            f"runtime {name!r} has no option {unknown[0]!r}",
            f"valid options: {', '.join(cls.options) or '(none)'}",
        )
    return cls(artifact, **_coerce_options(cls, options))


def _check_kind(name: str, cls: type, artifact: Any) -> None:
    art_kind = getattr(artifact, "kind", "causal-lm")
    runtime_kind = getattr(cls, "kind", "lm")
    label = f"{artifact.name} ({artifact.id})"
    if art_kind == "imatrix":
        raise KogataError(
            f"artifact {label} is an importance matrix (calibration statistics), not a model",
            "use it in quantize (imatrix=NAME) and run the quantized model instead",
        )
    if runtime_kind == "lm" and art_kind == EMBEDDER_KIND:
        raise KogataError(
            f"runtime {name!r} runs language models, but artifact {label} is a sentence embedder",
            "open it with the 'embedder' runtime (it embeds text; it cannot score or generate)",
        )
    if runtime_kind == "embedder" and art_kind != EMBEDDER_KIND:
        raise KogataError(
            f"runtime {name!r} runs sentence embedders, but artifact {label} is a {art_kind}",
            "run it with a language-model runtime such as torch or llamacpp, or pick an embedder artifact (e.g. minilm-l6)",
        )


def _as_artifact(artifact: Any) -> Any:
    if isinstance(artifact, (str, Path)):
        from kogata.artifacts.artifact import MANIFEST, Artifact

        folder = Path(artifact)
        if not (folder / MANIFEST).is_file():
            raise KogataError(f"{folder} is not an artifact folder (no {MANIFEST})", "import it first with `kogata models import PATH`")
        return Artifact.read(folder)
    return artifact


def _coerce_options(cls: type, options: dict[str, Any]) -> dict[str, Any]:
    """Turn string option values (from a CLI or YAML) into the constructor defaults' types."""
    params = inspect.signature(cls.__init__).parameters
    out = {}
    for key, value in options.items():
        default = params[key].default if key in params else None
        if isinstance(value, str) and isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise KogataError(f"runtime option {key}={value!r} is not a boolean", f"use {key}=true or {key}=false")
            value = value.lower() in ("true", "1", "yes")
        elif isinstance(value, str) and (isinstance(default, int) or (default is None and value.isdigit())):
            if not value.lstrip("-").isdigit():
                raise KogataError(f"runtime option {key}={value!r} is not an integer", f"use {key}=<number>")
            value = int(value)
        out[key] = value
    return out
