"""Suites: one YAML file listing tasks, KPIs, efficiency-probe settings and a price profile.

``load_suite("support-desk-en")`` finds a built-in suite in ``kogata/suites/<name>/suite.yaml``;
``load_suite("path/to/suite.yaml")`` (or the folder holding it) loads any other. Everything is validated at
load time: unknown keys get a did-you-mean hint, each task loads and checks its data, and every KPI must
name a metric the suite actually produces. The format is documented in ``docs/suite-format.md``.
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kogata.core.errors import KogataError
from kogata.eval.cost import load_price
from kogata.eval.kpi import COST_METRICS, EFFICIENCY_METRICS, task_metric_names
from kogata.eval.tasks import Task, build_task

SUITES_DIR = Path(__file__).resolve().parent.parent / "suites"
SUITE_FILE = "suite.yaml"
SUITE_KEYS = ("name", "version", "language", "description", "seed", "tasks", "kpis", "efficiency", "price", "baseline")
LANGUAGES = ("en", "ja")
DEFAULT_SEED = 1234
DEFAULT_PRICE = "cloud-2vcpu-jpy"
@dataclass
class Suite:
    name: str
    version: int
    language: str
    description: str
    seed: int
    tasks: list[Task]
    kpis: dict[str, dict[str, float]]  # {"min": {metric: bound}, "max": {metric: bound}}
    efficiency: dict[str, Any] = field(default_factory=dict)
    price: str | dict[str, Any] = DEFAULT_PRICE
    baseline: str | None = None
    path: Path | None = None
    sha256: str = ""

    def task(self, name: str) -> Task:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KogataError(f"suite {self.name} has no task {name!r}", f"tasks: {', '.join(t.name for t in self.tasks)}")

    def metric_names(self) -> list[str]:
        """Every ``<task>.<metric>`` this suite produces."""
        return [f"{t.name}.{m}" for t in self.tasks for m in task_metric_names(t)]


def builtin_suites() -> list[str]:
    return sorted(p.parent.name for p in SUITES_DIR.glob(f"*/{SUITE_FILE}"))


def resolve_suite_path(path_or_name: str | Path) -> Path:
    path = Path(path_or_name).expanduser()
    if path.is_dir() and (path / SUITE_FILE).is_file():
        return path / SUITE_FILE
    if path.is_file():
        return path
    builtin = SUITES_DIR / str(path_or_name) / SUITE_FILE
    if builtin.is_file():
        return builtin
    names = builtin_suites()
    close = difflib.get_close_matches(str(path_or_name), names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise KogataError(f"suite {str(path_or_name)!r} not found", f"{hint}give a suite.yaml path or a built-in name: {', '.join(names)}")


def load_suite(path_or_name: str | Path) -> Suite:
    path = resolve_suite_path(path_or_name)
    raw = path.read_bytes()
    try:
        doc = yaml.safe_load(raw.decode("utf-8"))
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else "?"
        raise KogataError(f"{path}:{line}: invalid YAML ({e.problem})", "fix the syntax at that line") from None
    except UnicodeDecodeError:
        raise KogataError(f"{path}: not UTF-8 text", "save the suite file as UTF-8") from None
    if not isinstance(doc, dict):
        raise KogataError(f"{path}: a suite must be a YAML mapping", "start with name:, tasks:, ...")
    for key in doc:
        if key not in SUITE_KEYS:
            close = difflib.get_close_matches(str(key), SUITE_KEYS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(SUITE_KEYS)}"
            raise KogataError(f"{path}: unknown top-level key {key!r}", hint)
    src = str(path)
    name = _typed(doc, "name", str, path.parent.name, src)
    version = _typed(doc, "version", int, 1, src)
    language = _typed(doc, "language", str, "en", src)
    if language not in LANGUAGES:
        raise KogataError(f"{src}: language {language!r} is not supported", f"use one of: {', '.join(LANGUAGES)}")
    seed = _typed(doc, "seed", int, DEFAULT_SEED, src)
    tasks_cfg = doc.get("tasks")
    if not isinstance(tasks_cfg, list) or not tasks_cfg:
        raise KogataError(f"{src}: tasks must be a non-empty list", "add at least one task under tasks:")
    tasks = [build_task(cfg, base_dir=path.parent, seed=seed, language=language, source=src) for cfg in tasks_cfg]
    seen: set[str] = set()
    for t in tasks:
        if t.name in seen:
            raise KogataError(f"{src}: two tasks are named {t.name!r}", "task names must be unique")
        if "." in t.name:
            raise KogataError(f"{src}: task name {t.name!r} contains '.'", "KPIs are written <task>.<metric>; rename the task")
        seen.add(t.name)
    suite = Suite(
        name=name,
        version=version,
        language=language,
        description=_typed(doc, "description", str, "", src),
        seed=seed,
        tasks=tasks,
        kpis={"min": {}, "max": {}},
        efficiency=_typed(doc, "efficiency", dict, {}, src),
        price=_price(doc.get("price", DEFAULT_PRICE), src),
        baseline=_typed(doc, "baseline", str, None, src),
        path=path,
        sha256=hashlib.sha256(raw).hexdigest(),
    )
    suite.kpis = _kpis(doc.get("kpis"), suite, src)
    return suite


def _typed(doc: dict[str, Any], key: str, kind: type, default: Any, src: str) -> Any:
    value = doc.get(key, default)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise KogataError(f"{src}: {key} must be {kind.__name__}, got {type(value).__name__} ({value!r})", f"fix the value of {key}")
    return value


def _price(value: Any, src: str) -> str | dict[str, Any]:
    if not isinstance(value, (str, dict)):
        raise KogataError(f"{src}: price must be a profile name or a mapping, got {type(value).__name__}", f"e.g. price: {DEFAULT_PRICE}")
    try:
        load_price(value)  # an unknown profile or a bad field fails when the suite loads
    except KogataError as exc:
        raise KogataError(f"{src}: price: {exc.message}", exc.hint) from None
    return value


def _kpis(value: Any, suite: Suite, src: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {"min": {}, "max": {}}
    if value is None:
        return out
    if not isinstance(value, dict) or not set(value) <= {"min", "max"}:
        raise KogataError(f"{src}: kpis must be a mapping with min: and/or max:", "e.g. kpis: {min: {faq_qa.f1: 0.3}, max: {latency_p95_ms: 4000}}")
    known = set(suite.metric_names()) | set(EFFICIENCY_METRICS) | set(COST_METRICS)
    for side in ("min", "max"):
        bounds = value.get(side) or {}
        if not isinstance(bounds, dict):
            raise KogataError(f"{src}: kpis.{side} must map metric names to numbers", f"e.g. kpis: {{{side}: {{intent.acc: 0.4}}}}")
        for metric, bound in bounds.items():
            if metric not in known:
                close = difflib.get_close_matches(str(metric), sorted(known), n=1)
                hint = (f"did you mean {close[0]!r}? " if close else "") + f"available: {', '.join(sorted(known))}"
                raise KogataError(f"{src}: kpis.{side} names unknown metric {metric!r}", hint)
            if isinstance(bound, bool) or not isinstance(bound, (int, float)):
                raise KogataError(f"{src}: kpis.{side}.{metric} must be a number, got {bound!r}", "write a plain number")
            out[side][metric] = float(bound)
    return out
