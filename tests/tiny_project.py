"""A tiny optimize project (tiny model + three-item suite) for fast tests of the search."""

from __future__ import annotations

from pathlib import Path

from tests.tiny_models import make_tiny_model
from tests.unit.test_cli_eval import write_suite


def make_project(folder: Path, *, kpis: str = "kpis: {max: {peak_rss_mb: 100000}}", quantize: str = "[Q8_0, Q4_0]",
                 budget: float = 10, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "tinydir").exists():
        make_tiny_model(folder / "tinydir", "llama")
    write_suite(folder / "suite", kpis=kpis)
    path = folder / "kogata.yaml"
    path.write_text(
        f"version: 1\nname: tiny-opt\nbase: ./tinydir\nsuite: suite/suite.yaml\nruntime: llamacpp\nthreads: 1\n"
        f"budget_minutes: {budget}\nlimit: 3\n{extra}search:\n  quantize: {quantize}\n  trim_vocab: {{enabled: false}}\n",
        encoding="utf-8",
    )
    return path
