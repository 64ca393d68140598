"""Serve settings: the keys of ``serve.yaml`` are the CLI flags (``kogata serve --help``).

```yaml
models:                      # or the single-model form:  artifact: NAME  +  alias: [a, b]
  - artifact: smollm2-135m-q8_0
    aliases: [production, default]
  - artifact: minilm-l6      # an embedder artifact: served on /v1/embeddings
  - artifact: "@candidate"   # "@NAME": whatever the store alias NAME names, followed when it changes
shadow: {production: candidate}            # mirror production's requests to candidate (answers discarded, compared)
shadow_share: 0.25                          #   … a quarter of them
canary: {production: {candidate: 10}}      # or: serve 10% of production's traffic from candidate (sticky per client)
host: 127.0.0.1
port: 8000
threads: 2
parallel: 4
ctx: 4096
flash_attn: false           # true: faster with several clients; score with `kogata eval --runtime llamacpp-engine --flash-attn` to match
```

``from: OPTIMIZE_OUT`` (flag ``--from``) serves the recommendation of a ``kogata optimize`` output folder.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kogata.core.errors import KogataError

ALIAS_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$"


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    artifact: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)

    @field_validator("aliases")
    @classmethod
    def _aliases_ok(cls, v: list[str]) -> list[str]:
        import re

        for a in v:
            if not re.match(ALIAS_PATTERN, a):
                raise ValueError(f"alias {a!r} may hold letters, digits and . _ : / @ - (at most 128 characters)")
        return v


class MonitorConfig(BaseModel):
    """``monitor:`` in serve.yaml: drift signals on recent traffic, published on /metrics (``kogata:drift_*``)."""

    model_config = ConfigDict(extra="forbid")

    reference: list[str] = Field(min_length=1)  # the suite's data / a corpus of questions (any format kogata data reads)
    window: str = "1h"  # how far back each check looks
    every_s: float = Field(default=300.0, ge=5)
    min_window: int = Field(default=50, ge=1)


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    models: list[ModelEntry] = Field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    threads: int | None = Field(default=None, ge=1)
    parallel: int = Field(default=4, ge=1, le=256)
    ctx: int = Field(default=4096, ge=64)
    flash_attn: bool = False  # GGUF engine: llama.cpp flash attention (faster batches; eval with flash_attn=true to match)
    max_waiting: int = Field(default=64, ge=0)  # requests queued beyond `parallel`; more → 429
    queue_timeout_s: float = Field(default=30.0, gt=0)  # a request waiting longer for a slot → 429
    request_timeout_s: float = Field(default=600.0, gt=0)  # whole request; then cancelled → 504
    max_body_bytes: int = Field(default=1 << 20, ge=1024)  # larger bodies → 413
    max_tokens_default: int = Field(default=256, ge=1)  # when the request names none (capped by the context)
    require_keys: bool = False  # forced on when host is not loopback
    drain_timeout_s: float = Field(default=30.0, ge=0)  # SIGTERM / hot swap: wait this long for in-flight requests
    usage_flush_s: float = Field(default=5.0, gt=0)
    ray: bool = False
    replicas: int = Field(default=1, ge=1, le=64)
    log_level: str = "info"
    policy: str | None = None  # guard policy YAML (kogata.guard): input/output checks and their actions
    audit: bool = True  # one hash-chained audit row per exchange, and the review queue fed from them
    monitor: MonitorConfig | None = None
    shadow: dict[str, str] = Field(default_factory=dict)  # served alias → alias that answers a mirrored copy
    shadow_share: float = Field(default=1.0, gt=0, le=1)  # share of requests mirrored
    canary: dict[str, dict[str, float]] = Field(default_factory=dict)  # served alias → {alias: percent of its traffic}
    follow_aliases_s: float = Field(default=5.0, ge=0)  # re-read the store's aliases for "@NAME" models (0: never)

    @field_validator("canary")
    @classmethod
    def _canary_ok(cls, v: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for alias, split in v.items():
            total = sum(split.values())
            if any(p <= 0 for p in split.values()) or total >= 100:
                raise ValueError(f"canary of {alias!r}: percentages must be > 0 and sum below 100 (got {split})")
        return v

    @property
    def keys_required(self) -> bool:
        return self.require_keys or not is_loopback(self.host)


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def build_config(
    *,
    artifacts: list[str] | None = None,
    aliases: list[str] | None = None,
    from_optimize: str | Path | None = None,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> ServeConfig:
    """Merge ``serve.yaml`` (if any), ``--from``, the positional artifact and flag overrides (flags win)."""
    data: dict[str, Any] = {}
    if config_file:
        data = _read_yaml(Path(config_file))
    single_art = data.pop("artifact", None)
    single_alias = data.pop("alias", None) or data.pop("aliases", None)
    frm = data.pop("from", None)
    if from_optimize:
        frm = from_optimize
    models = [dict(m) if isinstance(m, dict) else m for m in data.pop("models", []) or []]
    if single_art:
        models.insert(0, {"artifact": single_art, "aliases": _as_list(single_alias)})
    if frm:
        models.insert(0, {"artifact": recommended_artifact(Path(frm)), "aliases": []})
    for art in artifacts or []:
        models.insert(0, {"artifact": art, "aliases": []})
    if aliases:
        if not models:
            raise KogataError("--alias needs an artifact to name", "kogata serve ARTIFACT --alias production")
        first = models[0]
        if isinstance(first, dict):
            first["aliases"] = list(aliases) + [a for a in first.get("aliases") or [] if a not in aliases]
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    data["models"] = models
    try:
        cfg = ServeConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "config"
        hint = "see `kogata serve --help` for the keys and their ranges"
        if err["type"] == "extra_forbidden":
            hint = f"valid keys: {', '.join(ServeConfig.model_fields)}"
        raise KogataError(f"serve config: {where}: {err['msg']}", hint) from None
    if not cfg.models:
        raise KogataError("nothing to serve", "kogata serve ARTIFACT, --from OPTIMIZE_OUT, or `models:` in --config serve.yaml")
    return cfg


def recommended_artifact(out_dir: Path) -> str:
    """The artifact id ``kogata optimize`` recommended in ``OUT/results.json`` (``optimize.decision.recommended``
    names an entry; the entry's ``artifact.id`` is what was measured)."""
    path = out_dir / "results.json" if out_dir.is_dir() else out_dir
    if not path.is_file():
        raise KogataError(f"--from {out_dir}: no results.json there", "pass the --out folder of a finished `kogata optimize` run")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise KogataError(f"--from {out_dir}: results.json is not readable JSON ({exc})", "rerun `kogata optimize`") from None
    decision = (results.get("optimize") or {}).get("decision") or {}
    key = decision.get("recommended")
    if not key:
        raise KogataError(
            f"--from {out_dir}: the optimize run recommended nothing (no candidate passed every KPI)",
            "read its report.html for the closest miss, or serve an artifact by name",
        )
    for entry in results.get("entries") or []:
        if entry.get("key") == key:
            return entry["artifact"]["id"]
    raise KogataError(f"--from {out_dir}: recommended entry {key!r} is not among the results' entries", "rerun `kogata optimize`")


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise KogataError(f"--config {path}: no such file", "pass a serve.yaml (keys = the flags of `kogata serve`)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise KogataError(f"--config {path}: not valid YAML ({str(exc).splitlines()[0]})", "fix the file") from None
    if not isinstance(data, dict):
        raise KogataError(f"--config {path}: expected a mapping of settings", "e.g. `artifact: NAME` and `port: 8000`")
    return data


def _as_list(v: Any) -> list[str]:
    if v is None:
        return []
    return [v] if isinstance(v, str) else list(v)
