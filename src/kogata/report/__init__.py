"""Reports of an evaluation run: a self-contained HTML page and a Markdown summary, both from results.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kogata.report.html import render_html
from kogata.report.markdown import render_markdown

__all__ = ["render_html", "render_markdown", "write_reports"]


def write_reports(results: dict[str, Any], folder: Path) -> dict[str, Path]:
    """Write ``report.html`` and ``summary.md`` into ``folder``; returns their paths."""
    folder = Path(folder)
    html = folder / "report.html"
    md = folder / "summary.md"
    html.write_text(render_html(results), encoding="utf-8")
    md.write_text(render_markdown(results), encoding="utf-8")
    return {"html": html, "markdown": md}
