"""What it costs to serve a workload with an artifact: measured throughput × a price profile.

A price profile describes the machine (currency, price per hour) and the workload (requests per month,
prompt and output tokens per request, the share of the month a machine may be busy). Built-in profiles are
YAML files in ``kogata/prices/``; a suite names one (``price: cloud-2vcpu-jpy``) or gives a mapping whose
fields override a built-in one (``price: {profile: cloud-2vcpu-jpy, requests_per_month: 50000}``; without
``profile`` the base is :data:`DEFAULT_PROFILE`).

The model of serving is deliberately simple and stated in every report: one request at a time per machine
using all its threads; a request costs ``prompt_tokens / prefill_tok_s + output_tokens / decode_tok_s``
seconds; a machine is paid for the whole month, so the monthly cost is ``ceil(machines needed) × hours ×
price``. The compute-only cost (pay only for busy seconds) is shown next to it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from kogata.core.errors import KogataError

DEFAULT_PROFILE = "cloud-2vcpu-usd"
HOURS_PER_MONTH = 730.0  # 24 × 365 / 12


@dataclass
class PriceProfile:
    name: str
    currency: str
    price_per_hour: float
    requests_per_month: float
    prompt_tokens_per_request: float
    output_tokens_per_request: float
    utilisation: float = 0.5
    hours_per_month: float = HOURS_PER_MONTH
    description: str = ""
    description_ja: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_FIELDS = {f.name for f in fields(PriceProfile)}
_REQUIRED = ("currency", "price_per_hour", "requests_per_month", "prompt_tokens_per_request", "output_tokens_per_request")


_REGISTERED: dict[str, Path] = {}  # profiles added by register_price_profile (a company's own machines, …)


def _builtin_files() -> dict[str, Any]:
    folder = resources.files("kogata") / "prices"
    return {p.name[: -len(".yaml")]: p for p in folder.iterdir() if p.name.endswith(".yaml")}


def price_profiles() -> dict[str, Any]:
    """Every known price profile, ``{name: its YAML file}`` sorted by name: the built-ins in
    ``kogata/prices/`` and those added with :func:`register_price_profile`. CLI help and validation list these."""
    return dict(sorted({**_builtin_files(), **_REGISTERED}.items()))


def register_price_profile(name: str, path: str | Path) -> None:
    """Make the YAML profile at ``path`` available by ``name``."""
    path = Path(path)
    if not path.is_file():
        raise KogataError(f"price profile file {path} does not exist", "give the path of a YAML price profile")
    _REGISTERED[name] = path


def builtin_profiles() -> list[str]:
    """Names of the price profiles shipped with kogata."""
    return sorted(_builtin_files())


def price_profiles_help() -> str:
    """The profile names, comma-separated (for CLI help and error hints)."""
    return ", ".join(price_profiles())


def _read_builtin(name: str) -> dict[str, Any]:
    path = price_profiles().get(name)
    if path is None:
        raise KogataError(
            f"unknown price profile {name!r}",
            f"use one of {price_profiles_help()}, a path to a YAML profile, or an inline mapping in the suite",
        )
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise KogataError(f"price profile {name!r} ({path}) is not a YAML mapping", "fix the profile file")
    return data


def load_price(spec: str | dict[str, Any] | None) -> PriceProfile:
    """A :class:`PriceProfile` from a built-in name, a YAML path, or an inline mapping (overrides a base)."""
    if spec is None:
        spec = DEFAULT_PROFILE
    if isinstance(spec, str):
        path = Path(spec).expanduser()
        if spec.endswith((".yaml", ".yml")) and path.is_file():
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            data.setdefault("name", path.stem)
        else:
            data = _read_builtin(spec)
            data.setdefault("name", spec)
    elif isinstance(spec, dict):
        base_name = spec.get("profile") or spec.get("base") or DEFAULT_PROFILE
        overrides = {k: v for k, v in spec.items() if k not in ("profile", "base")}
        data = {**_read_builtin(base_name), "name": f"{base_name} (custom)" if overrides else base_name}
        data.update(overrides)
    else:
        raise KogataError(f"price must be a profile name or a mapping, got {type(spec).__name__}", "see docs/suite-format.md")
    return _validate(data)


def _validate(data: dict[str, Any]) -> PriceProfile:
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise KogataError(f"unknown price profile field(s) {', '.join(unknown)}", f"allowed fields: {', '.join(sorted(_FIELDS))}")
    missing = [k for k in _REQUIRED if data.get(k) is None]
    if missing:
        raise KogataError(f"price profile {data.get('name')!r} lacks {', '.join(missing)}", "add them, or start from a built-in with `profile: NAME`")
    out = {"utilisation": 0.5, "hours_per_month": HOURS_PER_MONTH, **data}  # the optional fields' defaults
    for key in ("price_per_hour", "requests_per_month", "prompt_tokens_per_request", "output_tokens_per_request", "utilisation", "hours_per_month"):
        try:
            out[key] = float(out[key])
        except (TypeError, ValueError):
            raise KogataError(f"price profile field {key} must be a number, got {out[key]!r}", "fix the price profile") from None
        if out[key] < 0:
            raise KogataError(f"price profile field {key} must not be negative, got {out[key]}", "fix the price profile")
    if not 0 < out["utilisation"] <= 1:
        raise KogataError(f"utilisation must be in (0, 1], got {out['utilisation']}", "e.g. 0.5 = a machine is busy at most half the month")
    if out["hours_per_month"] <= 0 or out["prompt_tokens_per_request"] + out["output_tokens_per_request"] <= 0:
        raise KogataError("hours_per_month and tokens per request must be positive", "fix the price profile")
    out["description"] = str(out.get("description") or "")
    out["description_ja"] = str(out.get("description_ja") or "")
    out["currency"] = str(out["currency"])
    return PriceProfile(**out)


def estimate_cost(prefill_tok_s: float | None, decode_tok_s: float | None, profile: PriceProfile) -> dict[str, Any] | None:
    """Serving cost for one artifact × runtime from its measured throughput (median tok/s); None if unmeasured."""
    if not prefill_tok_s or not decode_tok_s or prefill_tok_s <= 0 or decode_tok_s <= 0:
        return None
    p = profile
    seconds = p.prompt_tokens_per_request / prefill_tok_s + p.output_tokens_per_request / decode_tok_s
    tokens = p.prompt_tokens_per_request + p.output_tokens_per_request
    requests_per_hour = 3600.0 / seconds
    capacity = requests_per_hour * p.hours_per_month * p.utilisation  # requests one machine serves per month
    needed = p.requests_per_month / capacity
    machines = max(1, math.ceil(needed - 1e-9))
    busy_hours = p.requests_per_month * seconds / 3600.0
    return {
        "currency": p.currency,
        "seconds_per_request": seconds,
        "requests_per_machine_hour": requests_per_hour,
        "tokens_per_request": tokens,
        "cost_per_1m_tokens": p.price_per_hour * seconds / tokens * 1e6 / 3600.0,
        "cost_per_1k_requests": p.price_per_hour * seconds * 1000 / 3600.0,
        "machines_needed": needed,
        "machines": machines,
        "busy_hours_per_month": busy_hours,
        "cost_per_month": machines * p.hours_per_month * p.price_per_hour,
        "compute_cost_per_month": busy_hours * p.price_per_hour,
    }


def add_savings(costs: dict[str, dict[str, Any] | None], baseline: str | None) -> None:
    """Add ``saving`` (vs the baseline entry; positive = cheaper) to every cost dict, in place."""
    base = costs.get(baseline) if baseline else None
    for cost in costs.values():
        if cost is None:
            continue
        if base is None:
            cost["saving"] = None
            continue
        saving = {"vs": baseline}
        for field, label in (("cost_per_month", "per_month"), ("compute_cost_per_month", "compute_per_month"), ("cost_per_1m_tokens", "per_1m_tokens")):
            diff = base[field] - cost[field]
            saving[label] = diff
            saving[f"{label}_pct"] = 100.0 * diff / base[field] if base[field] else None
        cost["saving"] = saving
