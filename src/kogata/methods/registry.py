"""Methods: one way to transform an artifact into a new one, registered by name.

A method is a config dataclass + ``apply(artifact, config, ctx) -> Artifact``. The dataclass is the single
source of truth for ``kogata compress --set key=value``, recipe YAML and the lineage record.
"""

from __future__ import annotations

import dataclasses
import difflib
import errno
import time
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kogata.artifacts.artifact import Artifact, LineageStep
from kogata.artifacts.store import Store
from kogata.core.errors import KogataError
from kogata.methods.search_space import SearchSpace

Log = Callable[[str], None]


@dataclass
class MethodContext:
    """What a method may use besides its config: the store, the user's data, a seed, logging and progress."""

    store: Store
    data: list[Path] = field(default_factory=list)
    out_name: str | None = None
    seed: int = 0
    log: Log = print
    progress: Any = None  # a rich.progress.Progress, or None
    allow_reuse: bool = True

    def artifact_name(self, default: str) -> str:
        """The name for a method's output: ``out_name`` when the user chose one (a clash is then an error at
        commit); else ``default``, or ``default-2``, ``default-3``, … when another artifact already has it
        (e.g. the same method on other data)."""
        if self.out_name:
            return self.out_name
        name, n = default, 1
        while self.store.name_taken(name):
            n += 1
            name = f"{default}-{n}"
        return name

    def task(self, description: str, total: float | None) -> Callable[[float], None]:
        """Add a progress bar; return ``advance(n)``."""
        if self.progress is None:
            return lambda n=1: None
        tid = self.progress.add_task(description, total=total)
        return lambda n=1: self.progress.advance(tid, n)


@dataclass(frozen=True)
class MethodSpec:
    name: str
    config_cls: type
    apply: Callable[[Artifact, Any, MethodContext], Artifact]
    input_formats: tuple[str, ...]
    summary: str
    uses_data: bool = False
    search_space: SearchSpace | None = None  # how `kogata optimize` proposes it (methods/search_space.py)


METHODS: dict[str, MethodSpec] = {}
ADAPTER_METHODS = ("merge", "export-lora-gguf", "lora")  # the methods that take a LoRA adapter artifact (lora: to say so)


def register_method(name: str, config_cls: type, *, input_formats: tuple[str, ...], summary: str, uses_data: bool = False,
                    search_space: SearchSpace | None = None):
    def deco(fn: Callable[[Artifact, Any, MethodContext], Artifact]):
        METHODS[name] = MethodSpec(name, config_cls, fn, input_formats, summary, uses_data, search_space)
        return fn

    return deco


def search_spaces() -> list[tuple[str, SearchSpace]]:
    """(method name, declaration) of every registered method that the optimize search can propose."""
    _load_builtin_methods()
    return [(n, s.search_space) for n, s in sorted(METHODS.items()) if s.search_space is not None]


def _load_builtin_methods() -> None:
    import importlib

    for mod in ("gguf", "quantize", "trim_vocab", "prune", "distill", "lora"):
        try:
            importlib.import_module(f"{__package__}.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{mod}":
                raise


def get_method(name: str) -> MethodSpec:
    _load_builtin_methods()
    if name not in METHODS:
        close = difflib.get_close_matches(name, METHODS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise KogataError(f"unknown method {name!r}", f"{hint}valid methods: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def list_methods() -> list[MethodSpec]:
    _load_builtin_methods()
    return [METHODS[k] for k in sorted(METHODS)]


# ---- config parsing: strings from --set, values from YAML ------------------------------------------
def build_config(spec: MethodSpec, values: dict[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(spec.config_cls)}
    hints = typing.get_type_hints(spec.config_cls)
    kwargs = {}
    for key, raw in values.items():
        key = key.replace("-", "_")
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise KogataError(
                f"method {spec.name!r} has no parameter {key!r}",
                f"{hint}valid parameters: {', '.join(fields) or '(none)'}",
            )
        kwargs[key] = _coerce(spec.name, key, raw, hints[key])
    try:
        cfg = spec.config_cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise KogataError(f"method {spec.name!r}: {exc}", "see `kogata compress --list` for parameters") from None
    check = getattr(cfg, "validate", None)
    if check is not None:
        check()
    return cfg


def _coerce(method: str, key: str, raw: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null", "")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(method, key, raw, inner[0]) if len(inner) == 1 else raw
    if origin is typing.Literal:
        if raw not in args:
            raise KogataError(f"method {method!r}: {key}={raw!r} is not allowed", f"choose one of: {', '.join(map(str, args))}")
        return raw
    if origin in (list, tuple):
        items = raw if isinstance(raw, (list, tuple)) else [s for s in str(raw).split(",") if s.strip()]
        inner = args[0] if args else str
        return [_coerce(method, key, i.strip() if isinstance(i, str) else i, inner) for i in items]
    try:
        if tp is bool:
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("1", "true", "yes", "on"):
                return True
            if str(raw).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if tp in (int, float, str):
            return tp(raw)
    except (TypeError, ValueError):
        raise KogataError(f"method {method!r}: {key}={raw!r} is not a valid {tp.__name__}", f"give {key} as a {tp.__name__}") from None
    return raw


def parse_sets(pairs: list[str]) -> dict[str, str]:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise KogataError(f"--set {p!r} is not key=value", "write it like --set type=Q4_K_M")
        k, v = p.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def config_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


# ---- running -------------------------------------------------------------------------------------
def data_fingerprint(paths: list[Path]) -> str | None:
    if not paths:
        return None
    import hashlib

    from kogata.artifacts.artifact import sha256_file

    h = hashlib.sha256()
    for p in sorted(paths):
        for f in sorted(p.rglob("*")) if p.is_dir() else [p]:
            if f.is_file():
                h.update(f.name.encode() + b"\0" + sha256_file(f).encode())
    return h.hexdigest()[:16]


def find_reusable(store: Store, parent: Artifact, method: str, cfg: dict[str, Any], fingerprint: str | None) -> Artifact | None:
    """An existing child of ``parent`` made by the same method, config and data (so recipes replay for free)."""
    for child in store.children(parent.id):
        last = child.lineage[-1] if child.lineage else {}
        if last.get("method") == method and last.get("config") == cfg and last.get("data_fingerprint") == fingerprint:
            if not child.verify():
                return child
    return None


def check_input_kind(artifact: Artifact, name: str) -> None:
    """A LoRA adapter artifact goes only to the methods made for adapters."""
    if getattr(artifact, "kind", None) == "lora-adapter" and name not in ADAPTER_METHODS:
        raise KogataError(
            f"{artifact.name} is a LoRA adapter, which {name!r} cannot take",
            f"merge it into its base first: kogata compress {artifact.name} -m merge (then {name} on the merged model)",
        )


def apply_method(artifact: Artifact, name: str, values: dict[str, Any], ctx: MethodContext) -> Artifact:
    spec = get_method(name)
    check_input_kind(artifact, name)
    cfg = build_config(spec, values)
    if artifact.format not in spec.input_formats:
        raise KogataError(
            f"method {name!r} takes {' or '.join(spec.input_formats)} artifacts, but {artifact.name} is {artifact.format}",
            "export-gguf turns an hf artifact into gguf" if "gguf" in spec.input_formats else "use the hf artifact this GGUF came from",
        )
    if spec.uses_data and not ctx.data and getattr(cfg, "requires_data", True):
        raise KogataError(f"method {name!r} needs your texts", "pass --data FILE (plain text or JSONL)")
    fingerprint = data_fingerprint(ctx.data) if spec.uses_data else None
    cfg_dict = config_dict(cfg)
    if ctx.out_name:
        existing = ctx.store.find(ctx.out_name)
        if existing is not None:
            last = existing.lineage[-1] if existing.lineage else {}
            same = existing.parent == artifact.id and last.get("method") == name and last.get("config") == cfg_dict
            if not same:
                ctx.store.check_name_free(ctx.out_name)
    if ctx.allow_reuse:
        reused = find_reusable(ctx.store, artifact, name, cfg_dict, fingerprint)
        if reused is not None:
            ctx.log(f"{name}: reusing {reused.name} ({reused.id}) made earlier with the same config and data")
            return reused
    started = time.time()
    try:
        result = spec.apply(artifact, cfg, ctx)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise KogataError(
                f"{name}: no space left on the device while writing the new artifact (nothing was kept)",
                f"free disk space under {ctx.store.home} or point KOGATA_HOME at a larger disk",
            ) from None
        raise
    ctx.log(f"{name}: {artifact.name} → {result.name} ({result.id}) in {time.time() - started:.1f}s")
    return result


def new_step(name: str, cfg: Any, ctx: MethodContext, started: float, **extra: Any) -> LineageStep:
    """The lineage record for one method application (config, seed, data fingerprint, duration)."""
    spec = METHODS[name]
    return LineageStep(
        method=name,
        config=config_dict(cfg),
        seed=ctx.seed,
        data_fingerprint=data_fingerprint(ctx.data) if spec.uses_data else None,
        duration_s=time.time() - started,
        **extra,
    )
