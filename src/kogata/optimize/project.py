"""The project file ``kogata.yaml``: what to optimise, against which suite and KPIs, within which budget."""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kogata.core.errors import KogataError

PROJECT_KEYS = {
    "version": "file format version (1)",
    "name": "a name for this project",
    "language": "report language: en | ja",
    "base": "the model to start from: catalog name, artifact name/id, or a local path",
    "suite": "suite name (support-desk-en, support-desk-ja) or a suite YAML path",
    "runtime": "target runtime: llamacpp (GGUF) or torch",
    "threads": "CPU threads for every measurement",
    "price": "price profile name or mapping (overrides the suite's)",
    "data": "your domain texts (files/folders) for trimming, distillation and LoRA",
    "budget_minutes": "time budget for the whole search",
    "limit": "items per task for the final comparison (null = all); finalists are confirmed on these",
    "screen_items": "items per task while screening candidates (null = 10, or limit when smaller)",
    "quality_margins": "non-inferiority margin per task (or task.metric): absolute for scores (default 0.05), relative for bits/byte (default 0.02)",
    "search": "which methods and parameter ranges to consider",
}
SCREEN_DEFAULT = 10


def search_keys() -> dict[str, str]:
    """The ``search:`` keys: one per registered method with a search-space declaration."""
    from kogata.optimize.space import spaces

    return {key: space.help for key, space in spaces().items()}


def _typo_check(doc: dict[str, Any], valid: dict[str, str], where: str) -> None:
    for key in doc:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise KogataError(f"{where}: unknown key {key!r}", f"{hint}valid keys: {', '.join(valid)}")


@dataclass
class Project:
    path: Path
    base: str = "smollm2-135m"
    suite: str = "support-desk-en"
    name: str = "kogata-project"
    version: int = 1
    language: str = "en"
    runtime: str = "llamacpp"
    threads: int = 2
    price: Any = None
    data: list[Path] = field(default_factory=list)
    budget_minutes: float = 15.0
    limit: int | None = None
    screen_items: int | None = None
    quality_margins: dict[str, float] = field(default_factory=dict)
    search: dict[str, Any] = field(default_factory=dict)  # search key → its section (defaults filled in)
    sha256: str = ""

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def screen_limit(self) -> int | None:
        """Items per task while screening: ``screen_items``, else 10 (never more than ``limit``)."""
        screen = self.screen_items if self.screen_items is not None else SCREEN_DEFAULT
        return screen if self.limit is None else min(screen, self.limit)

    def identity(self) -> str:
        """What makes two runs 'the same command': the project content (resume key)."""
        return self.sha256[:16]


def load_project(path: Path) -> Project:
    path = Path(path).expanduser()
    if not path.is_file():
        raise KogataError(f"project file {path} does not exist", "create one with `kogata init` (or give its path)")
    raw = path.read_bytes()
    try:
        doc = yaml.safe_load(raw.decode("utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise KogataError(f"{path} is not valid YAML ({str(exc).splitlines()[0]})", "fix the syntax (indentation, colons)") from None
    if not isinstance(doc, dict):
        raise KogataError(f"{path} must be a mapping of keys", "see `kogata init` for an example")
    _typo_check(doc, PROJECT_KEYS, str(path))
    search_doc = doc.pop("search", None) or {}
    if not isinstance(search_doc, dict):
        raise KogataError(f"{path}: search must be a mapping", "e.g. search: {quantize: [Q4_K_M]}")
    from kogata.optimize.space import spaces

    declared = spaces()
    _typo_check(search_doc, search_keys(), f"{path}: search")
    search = {}
    for key, space in declared.items():
        section = search_doc.get(key)
        section = _copy(space.default) if section is None else section
        if space.section_type is list and isinstance(section, str):
            section = [section]
        search[key] = section
    if doc.get("quality_margins") is None:
        doc.pop("quality_margins", None)
    data = doc.pop("data", None) or []
    data = [data] if isinstance(data, str) else list(data)
    project = Project(path=path, search=search, sha256=hashlib.sha256(raw).hexdigest(), **doc)
    project.data = [(path.parent / d).resolve() if not Path(d).is_absolute() else Path(d) for d in data]
    _validate(project)
    return project


def _validate(p: Project) -> None:
    where = str(p.path)
    if p.version != 1:
        raise KogataError(f"{where}: version {p.version} is not supported", "use version: 1")
    if p.language not in ("en", "ja"):
        raise KogataError(f"{where}: language {p.language!r} is not supported", "use en or ja")
    if p.runtime not in ("llamacpp", "torch"):
        raise KogataError(f"{where}: runtime {p.runtime!r} is not supported", "use llamacpp (GGUF) or torch")
    if not isinstance(p.threads, int) or p.threads < 1:
        raise KogataError(f"{where}: threads must be a positive integer", "e.g. threads: 2")
    if not isinstance(p.budget_minutes, (int, float)) or p.budget_minutes <= 0:
        raise KogataError(f"{where}: budget_minutes must be a positive number", "e.g. budget_minutes: 15")
    if p.limit is not None and (not isinstance(p.limit, int) or p.limit < 1):
        raise KogataError(f"{where}: limit must be a positive integer or null", "e.g. limit: 20")
    if p.screen_items is not None and (not isinstance(p.screen_items, int) or p.screen_items < 2):
        raise KogataError(f"{where}: screen_items must be an integer of at least 2, or null", "e.g. screen_items: 10")
    if not isinstance(p.quality_margins, dict) or not all(isinstance(v, (int, float)) and 0 <= v < 1 for v in p.quality_margins.values()):
        raise KogataError(f"{where}: quality_margins must map task names to margins in [0, 1)", "e.g. quality_margins: {intent: 0.1, docs: 0.03}")
    for d in p.data:
        if not d.exists():
            raise KogataError(f"{where}: data path {d} does not exist", "fix the path (relative paths start at the project file's folder)")
    from kogata.optimize.space import spaces

    ctx = space_context(p)
    for key, space in spaces().items():
        space.check(p.search[key], ctx)


def space_context(p: Project) -> Any:
    """What the search-space declarations see of this project."""
    from kogata.methods.search_space import SpaceContext
    from kogata.optimize.space import target_format

    return SpaceContext(base=p.base, target_format=target_format(p.runtime), have_data=bool(p.data), folder=p.folder,
                        where=str(p.path), data=tuple(str(Path(d).resolve()) for d in p.data))


def _copy(value: Any) -> Any:
    import copy

    return copy.deepcopy(value)


INIT_TEMPLATE = """\
# kogata project — `kogata optimize` finds the cheapest model that meets your KPIs.
# kogata プロジェクト — `kogata optimize` は KPI を満たす最も安いモデルを探します。
version: 1
name: {name}
language: {language}              # report language / レポートの言語: en | ja

# The model to start from: a catalog name (smollm2-135m, gemma3-270m), an artifact, or a local path.
# 出発点のモデル：カタログ名（smollm2-135m, gemma3-270m）、アーティファクト名、またはローカルのパス。
base: {base}

# Tasks and KPIs: a built-in suite (support-desk-en, support-desk-ja) or your own suite YAML.
# タスクと KPI：同梱スイート（support-desk-en, support-desk-ja）または独自のスイート YAML。
suite: {suite}

# Where the model will run: llamacpp (GGUF, fastest on CPU) or torch. Threads used for every measurement.
# 実行環境：llamacpp（GGUF、CPU で最速）または torch。すべての計測で使うスレッド数。
runtime: llamacpp
threads: 2

# Price of the machine (built-in: cloud-2vcpu-jpy, cloud-2vcpu-usd, onprem-pc-jpy). Null = the suite's.
# マシンの料金プロファイル（同梱：cloud-2vcpu-jpy, cloud-2vcpu-usd, onprem-pc-jpy）。null ならスイートの設定。
price: {price}

# Your own texts (files or folders) for vocabulary trimming, distillation and LoRA. Optional.
# 語彙削減・蒸留・LoRA に使う自社テキスト（ファイルまたはフォルダ）。省略可。
data: {data}

# Time budget for the whole search, and items per task while searching (null = all items).
# 探索全体の時間予算（分）と、探索中に各タスクで使う件数（null なら全件）。
budget_minutes: {budget}
limit: {limit}

# What to try. Omit a section to use the defaults. / 試す手法。省略すると既定値。
search:
  quantize: [Q4_K_M, Q4_0, Q8_0]          # GGUF types / 量子化の種類
  trim_vocab: {{enabled: auto}}             # auto = when data is given / data がある場合に実行
  prune_depth: {{enabled: false, keep_ratios: [0.75], distill_minutes: 10}}
  lora: {{enabled: false}}
"""


def init_project(path: Path, *, base: str, suite: str, language: str, data: list[str], budget: float, limit: int | None, price: str | None, force: bool) -> Path:
    path = Path(path)
    if path.exists() and not force:
        raise KogataError(f"{path} already exists", "pass --force to overwrite it, or choose another path")
    text = INIT_TEMPLATE.format(
        name=path.resolve().parent.name or "kogata-project",
        language=language,
        base=base,
        suite=suite,
        price=price or "null",
        data="[" + ", ".join(data) + "]" if data else "[]",
        budget=budget,
        limit=limit if limit is not None else "null",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
