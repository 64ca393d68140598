"""The drift monitor report: one self-contained HTML page (plotly inline, offline) in en or ja, from a list of
:class:`kogata.ops.drift.DriftReport` windows (oldest first; the last is "now")."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from kogata import __version__
from kogata.core.io import atomic_text_file
from kogata.report import format as f
from kogata.report.i18n import fmt, strings
from kogata.report.render import render_page


def _chart(windows: list[Any], t: dict[str, str]) -> str | None:
    import plotly.graph_objects as go

    names = sorted({s.name for w in windows for s in w.signals if s.effect is not None and s.threshold})
    if not names or len(windows) < 2:
        return None
    fig = go.Figure()
    xs = [w.window.get("last", i) for i, w in enumerate(windows)]
    for name in names:
        ys = []
        for w in windows:
            s = next((s for s in w.signals if s.name == name), None)
            ys.append(s.effect / s.threshold if s is not None and s.effect is not None and s.threshold else None)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=name))
    fig.add_hline(y=1.0, line_dash="dash", line_color="#b42318")
    fig.update_layout(template="plotly_white", height=420, xaxis_title=t["mon_window_axis"], yaxis_title=t["mon_effect_axis"],
                      margin={"l": 60, "r": 30, "t": 30, "b": 50})
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False, "responsive": True})


def build_view(windows: list[Any], language: str = "en") -> dict[str, Any]:
    t = strings(language)
    lang = language if language in ("en", "ja") else "en"
    latest = windows[-1]
    rows = []
    for s in latest.signals:
        rows.append({"name": s.name, "status": t.get(f"mon_status_{s.status}", s.status), "message": s.message.get(lang, ""),
                     "badge": {"alert": "FAIL", "ok": "PASS"}.get(s.status, "base"), "value": f.num(s.value, 3),
                     "reference": f.num(s.reference, 3), "effect": f.num(s.effect, 3), "threshold": f.num(s.threshold, 3),
                     "p": "-" if s.p_value is None else f"{s.p_value:.2g}"})
    created = dt.datetime.fromtimestamp(latest.created, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return {"lang": lang, "t": t, "latest": latest, "windows": windows, "rows": rows, "verdict": latest.verdict(lang),
            "chart": _chart(windows, t), "terms": [{**x, "share": f.pct(100 * x["share"], signed=False),
                                                   "reference_share": f.pct(100 * x["reference_share"], signed=False)}
                                                  for x in latest.new_terms],
            "examples": latest.examples, "footer": fmt(t["mon_footer"], product="kogata", version=__version__, created=created)}


def write_monitor_report(windows: list[Any], out: Path, language: str = "en") -> Path:
    """Write ``out`` (an .html file), renamed into place when complete."""
    html = render_page("monitor.html.j2", build_view(windows, language), with_plotly=True)
    out = Path(out)
    with atomic_text_file(out) as fh:
        fh.write(html)
    return out
