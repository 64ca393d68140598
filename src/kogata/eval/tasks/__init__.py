"""Task types, registered by name; one module per type (``generate``, ``multiple_choice``, ``perplexity``).

A task is built from its YAML mapping (see ``docs/suite-format.md``), loads and validates its data at once
(so a broken suite fails at load time, naming the file, task, item or field), and then

* ``run(runtime, progress=None, limit=None)`` scores it and returns
  ``{"name", "type", "version", "n", "data_sha", "fewshot", "seconds", "metrics", "per_item", "samples", ...}``
  where each metric is ``{"value", "stderr", "ci_low", "ci_high", "n"}``, ``per_item`` holds the item ids
  and each item's scores (so two runs can be compared item by item) and ``samples`` the first 20 items
  (prompt / prediction / target / score);
* ``prompts(n)`` returns the first ``n`` prompts as :class:`GenerateRequest` (the efficiency probe times them);
* ``produced_metrics()`` names the metrics this declared task reports (what a KPI may name).

Each type declares, as class attributes, the metrics it can report (``metrics``: names registered in
:data:`kogata.eval.metrics.METRICS`), its primary metric in order of preference (``primary``, what the
optimize decision compares) and the kind of runtime it needs (``runtime_kind``: ``"lm"``). KPI validation,
the optimize decision and the reports read these through :func:`task_type`, :func:`primary_metric` and
:func:`produced_metrics` instead of switching on type names.

Adding a task type = one module with a ``Task`` subclass decorated with ``@register_task_type("name")``,
imported at the bottom of this file, plus one row in the parametrised test. Types that live in a higher layer
(``retrieval`` and ``rag_qa`` in :mod:`kogata.search`, which eval may not import) are named in
:data:`PLUGIN_TASK_TYPES` instead: the module is imported by name the first time a suite, a KPI or a report
meets the type, and registers itself then.
Prompt templates use Python ``str.format`` fields (``{question}``); every field must be mapped to a data
column in ``fields`` (``{{``/``}}`` write literal braces). Few-shot examples are drawn per item with a
generator seeded by (suite seed, task name, item index), so reruns see identical prompts.
"""

from __future__ import annotations

import difflib
import importlib
import random
import string
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

import kogata.eval.metrics as M
from kogata.core.errors import KogataError
from kogata.eval.data import Record, fingerprint, load_records
from kogata.runtimes.base import GenerateRequest

Progress = Callable[[str, int, int], None]  # (task name, items done, items total)
N_SAMPLES = 20
TASK_TYPES: dict[str, type[Task]] = {}
# type name -> the module that registers it when imported (by name: these modules sit above eval in the layers)
PLUGIN_TASK_TYPES: dict[str, str] = {"retrieval": "kogata.search.eval_task", "rag_qa": "kogata.search.rag_task"}


def register_task_type(name: str):
    """Class decorator: make a :class:`Task` subclass available to suites as ``type: name``."""

    def deco(cls: type[Task]) -> type[Task]:
        unknown = [m for m in cls.metrics if m not in M.METRICS or M.METRICS[m].group != "quality"]
        if unknown or not cls.metrics:
            raise ValueError(f"task type {name}: metrics {unknown or '(none)'} are not registered quality metrics")
        if not set(cls.primary) <= set(cls.metrics):
            raise ValueError(f"task type {name}: primary metrics must be among its metrics")
        cls.type_name = name
        TASK_TYPES[name] = cls
        return cls

    return deco


def task_type_names() -> list[str]:
    """Every type a suite may name: the registered ones and the plugin types (registered on first use)."""
    return sorted(set(TASK_TYPES) | set(PLUGIN_TASK_TYPES))


def _registered(name: Any) -> type[Task] | None:
    """The class registered as ``name``, importing its plugin module first when it is a plugin type."""
    if not isinstance(name, str):
        return None
    if name not in TASK_TYPES and name in PLUGIN_TASK_TYPES:
        module = PLUGIN_TASK_TYPES[name]
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise KogataError(f"task type {name!r} lives in {module}, which cannot be imported ({exc})",
                              "install kogata with its search dependencies (pip install -e .)") from None  # fmt: skip
    return TASK_TYPES.get(name)


def task_type(name: str) -> type[Task] | None:
    """The class registered as ``name`` (None for an unknown name)."""
    return _registered(name)


def primary_metric(type_name: str, available: Iterable[str]) -> str | None:
    """The metric that stands for a task result: the type's first ``primary`` metric that is ``available``
    (reported with a value), else the first available one."""
    names = list(available)
    cls = _registered(type_name)
    for m in cls.primary if cls else ():
        if m in names:
            return m
    return names[0] if names else None


def produced_metrics(task: Any) -> list[str]:
    """The metrics a declared task will report: its own ``produced_metrics()``, else — for a plain record
    with ``type`` and maybe ``metrics`` (a results entry, a test double) — the declared list or the type's."""
    method = getattr(task, "produced_metrics", None)
    if callable(method):
        return list(method())
    kind = getattr(task, "type_name", None) or getattr(task, "type", None) or ""
    declared = getattr(task, "metric_names", None) or getattr(task, "metrics", None)
    if declared and not callable(declared) and not isinstance(declared, dict):
        return [m if isinstance(m, str) else getattr(m, "name", str(m)) for m in declared]
    cls = _registered(kind)
    return list(cls.metrics) if cls else []


def build_task(cfg: dict[str, Any], *, base_dir: Path, seed: int, language: str, source: str) -> Task:
    """Build one task from its suite mapping; ``source`` names the suite file for error messages."""
    if not isinstance(cfg, dict):
        raise KogataError(f"{source}: each entry of tasks must be a mapping, got {type(cfg).__name__}", "write - name: ...\\n  type: ...")
    name = cfg.get("name")
    if not isinstance(name, str) or not name.strip():
        raise KogataError(f"{source}: a task has no name", "give every task a unique name: <identifier>")
    kind = cfg.get("type")
    cls = _registered(kind)
    if cls is None:
        raise KogataError(f"{source}: task {name!r} has unknown type {kind!r}", f"valid types: {', '.join(task_type_names())}")
    return cls(cfg, base_dir=base_dir, seed=seed, language=language, source=source)


def template_fields(template: str) -> list[str]:
    try:
        return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise KogataError(f"bad template {template!r}: {e}", "use {field} for values and {{ }} for literal braces") from None


def text_of(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


class Task:
    """Shared parts: data, fields, templates, few-shot, limits, result assembly."""

    type_name = ""
    metrics: ClassVar[tuple[str, ...]] = ()  # every metric this type can report (registered names)
    primary: ClassVar[tuple[str, ...]] = ()  # the metric that stands for a result, in order of preference
    runtime_kind: ClassVar[str] = "lm"  # the kind of runtime it needs: "lm" scores and generates text
    common_keys = ("name", "type", "version", "data", "fields", "limit", "description")
    keys: tuple[str, ...] = ()
    templates: tuple[str, ...] = ()  # keys whose values are templates
    required: tuple[str, ...] = ()

    def __init__(self, cfg: dict[str, Any], *, base_dir: Path, seed: int, language: str, source: str):
        self.cfg, self.base_dir, self.seed, self.language = dict(cfg), base_dir, seed, language
        self.name: str = cfg["name"]
        self.where = f"{source}: task {self.name!r}"
        allowed = set(self.common_keys) | set(self.keys)
        for key in cfg:
            if key not in allowed:
                close = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"valid keys for {self.type_name}: {', '.join(sorted(allowed))}"
                raise KogataError(f"{self.where}: unknown key {key!r}", hint)
        for key in self.required:
            if cfg.get(key) in (None, ""):
                raise KogataError(f"{self.where}: missing {key!r}", f"a {self.type_name} task needs {key}")
        self.version = cfg.get("version", 1)
        self.limit = self._int("limit", None, minimum=1)
        self.description = self._str("description", "")
        self.fields: dict[str, str] = self._fields(cfg.get("fields"))
        for key in self.templates:
            for var in template_fields(self._str(key, "")):
                if var not in self.fields:
                    raise KogataError(
                        f"{self.where}: template variable {{{var}}} in {key} has no entry in fields",
                        f"add it to fields, e.g. fields: {{{var}: <column name>}}",
                    )
        self.records = load_records(cfg.get("data"), base_dir, where=f"{self.where}, data")
        self._check_columns(self.records, "data")
        self.data_sha = fingerprint(self.records)

    def produced_metrics(self) -> list[str]:
        return list(self.metrics)

    # ---------------------------------------------------------------- config helpers
    def _default_fields(self) -> dict[str, str]:
        return {}

    def _fields(self, value: Any) -> dict[str, str]:
        if value is None:
            return self._default_fields()
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise KogataError(f"{self.where}: fields must map template variables to column names", "e.g. fields: {question: question}")
        return dict(value)

    def _str(self, key: str, default: str | None) -> Any:
        value = self.cfg.get(key, default)
        if value is not None and not isinstance(value, str):
            raise KogataError(f"{self.where}: {key} must be a string, got {type(value).__name__}", f"quote the value of {key}")
        return value

    def _int(self, key: str, default: int | None, minimum: int = 0) -> Any:
        value = self.cfg.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise KogataError(f"{self.where}: {key} must be an integer >= {minimum}, got {value!r}", f"fix {key}")
        return value

    def _check_columns(self, records: list[Record], what: str) -> None:
        columns = set(self.fields.values()) | set(self._extra_columns())
        for i, record in enumerate(records):
            missing = sorted(c for c in columns if c not in record)
            if missing:
                raise KogataError(
                    f"{self.where}: item {self.item_id(record, i)} in {what} has no column {missing[0]!r}",
                    f"columns present: {', '.join(map(str, record))}; fix fields or the data",
                )

    def _extra_columns(self) -> list[str]:
        return []

    @staticmethod
    def item_id(record: Record, index: int) -> str:
        return str(record.get("id", f"#{index + 1}"))

    def render(self, template: str, record: Record) -> str:
        return template.format(**{var: text_of(record[col]) for var, col in self.fields.items()})

    # ---------------------------------------------------------------- few-shot
    def _setup_fewshot(self) -> None:
        self.fewshot = self._int("fewshot", 0)
        self.fewshot_delimiter = self._str("fewshot_delimiter", "\n\n")
        self.fewshot_records: list[Record] | None = None
        if self.cfg.get("fewshot_data") is not None:
            self.fewshot_records = load_records(self.cfg["fewshot_data"], self.base_dir, where=f"{self.where}, fewshot_data")
            self._check_columns(self.fewshot_records, "fewshot_data")

    def fewshot_examples(self, index: int) -> list[tuple[Record, int]]:
        """The few-shot examples for item ``index``: (record, its index in its pool)."""
        if not self.fewshot:
            return []
        if self.fewshot_records is not None:
            source, pool = self.fewshot_records, list(range(len(self.fewshot_records)))
        else:
            source, pool = self.records, [j for j in range(len(self.records)) if j != index]
        rng = random.Random(f"{self.seed}:{self.name}:{index}")
        return [(source[j], j) for j in rng.sample(pool, min(self.fewshot, len(pool)))]

    # ---------------------------------------------------------------- running
    def selected(self, limit: int | None = None) -> list[tuple[int, Record]]:
        caps = [c for c in (self.limit, limit) if c is not None]
        n = min([len(self.records), *caps])
        return list(enumerate(self.records[:n]))

    def run(self, runtime: Any, progress: Progress | None = None, limit: int | None = None) -> dict[str, Any]:
        started = time.perf_counter()
        items = self.selected(limit)
        out = self._run(runtime, items, progress or (lambda *_: None))
        samples = out.pop("samples")
        return {
            "name": self.name,
            "type": self.type_name,
            "version": self.version,
            "n": len(items),
            "data_sha": self.data_sha,
            "fewshot": getattr(self, "fewshot", 0),
            "seconds": round(time.perf_counter() - started, 3),
            **out,  # metrics, per_item and any type-specific fields
            "samples": samples[:N_SAMPLES],
        }

    def _run(self, runtime: Any, items: list[tuple[int, Record]], progress: Progress) -> dict[str, Any]:
        """``{"metrics": {...}, "per_item": {"id": [...], ...}, "samples": [...]}`` plus type-specific fields."""
        raise NotImplementedError

    def prompts(self, n: int) -> list[GenerateRequest]:
        raise NotImplementedError


# the built-in types register themselves on import
from kogata.eval.tasks import generate, multiple_choice, perplexity  # noqa: E402,F401
