"""The one template system: every HTML report page is a Jinja2 template under ``report/templates/`` that
extends ``base.html.j2``, rendered here from a view dict."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).parent / "templates"


@functools.cache
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=jinja2.select_autoescape(["html", "j2"]),
                              trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)


def render_page(template: str, view: dict[str, Any], *, with_plotly: bool) -> str:
    """Render ``template`` with ``view``; ``with_plotly`` embeds plotly's JavaScript (offline reports)."""
    from plotly.offline import get_plotlyjs

    return _environment().get_template(template).render(**view, plotly_js=get_plotlyjs() if with_plotly else "")
