"""Monitoring: the drift signals of served traffic, in plain words, per served alias.

Two sources, both computed by the library (:mod:`kogata.ops.drift`): the server's own monitor loop (serve.yaml
``monitor:``; its last report is what ``/metrics`` publishes as ``kogata:drift_*``), and, per served alias, the
same check on that alias's traffic of the last ``monitor.window`` (:func:`kogata.ops.drift.status.alias_status`,
read-only, kept ``CACHE_S`` seconds). The HTML report of ``kogata monitor report --out $KOGATA_HOME/monitor`` is
linked when it exists.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from kogata.core.errors import KogataError
from kogata.serve.ui.pages_runs import REPORT_CSP
from kogata.serve.ui.security import UIContext, UIError, ui_state, viewer
from kogata.serve.ui.web import audit_log, render, serve_state

router = APIRouter(prefix="/ui")
CACHE_S = 10.0  # a page view recomputes the per-alias signals at most this often


def signal_label(t: Any, name: str) -> str:
    """A signal's name in plain words (``guard:pii`` → the guard check's own name inside)."""
    if name.startswith("guard:"):
        return t("sig_guard", check=name.split(":", 1)[1])
    return t("sig_" + name) if ("sig_" + name) in t.strings else name


def report_view(t: Any, lang: str, report: Any) -> dict[str, Any]:
    from kogata.ops.drift.status import signal_rows

    rows = signal_rows(report, lang)
    for r in rows:
        r["label"] = signal_label(t, r["name"])
    return {"n": report.n, "n_reference": report.n_reference, "created": report.created, "alert": bool(report.alerts),
            "verdict": report.verdict(lang), "rows": rows}


def _alias_reports(request: Request) -> tuple[list[Any], str | None]:
    """(per-alias statuses, the reference's problem or None), cached ``CACHE_S`` seconds."""
    from kogata.ops.audit.export import parse_since
    from kogata.ops.drift.status import alias_status, cached_reference

    state = serve_state(request)
    mon = state.config.monitor
    cache = ui_state(request).extra
    hit = cache.get("drift_status")
    if hit is not None and time.monotonic() - hit[0] < CACHE_S:
        return hit[1], hit[2]
    aliases = sorted(a for a, m in state.models.routes().items() if m.kind == "lm")
    try:
        reference = cached_reference(list(mon.reference))
        statuses, problem = alias_status(audit_log(request), reference, aliases, since_us=parse_since(mon.window),
                                         min_window=mon.min_window), None
    except KogataError as exc:
        statuses, problem = [], str(exc)
    cache["drift_status"] = (time.monotonic(), statuses, problem)
    return statuses, problem


def monitoring_view(request: Request, ctx: UIContext) -> dict[str, Any]:
    from kogata.ops.drift.status import monitor_report_file
    from kogata.serve.ui.pages_main import traffic_today

    state = serve_state(request)
    mon = state.config.monitor
    view: dict[str, Any] = {"configured": mon is not None, "window": mon.window if mon else "", "server": None, "aliases": [],
                            "problem": None, "report_link": monitor_report_file(ui_state(request).home) is not None,
                            "traffic": traffic_today(request)}
    if state.drift is not None:
        view["server"] = report_view(ctx.t, ctx.lang, state.drift)
    if mon is not None:
        statuses, view["problem"] = _alias_reports(request)
        view["aliases"] = [{"alias": s.alias, **report_view(ctx.t, ctx.lang, s.report)} for s in statuses]
    return view


@router.get("/monitoring")
async def monitoring(request: Request, ctx: UIContext = Depends(viewer)) -> Response:
    view = await run_in_threadpool(monitoring_view, request, ctx)
    return render(ctx, "monitoring.html.j2", title=ctx.t("monitoring_title"), **view)


@router.get("/monitoring/report.html")
def monitor_report(request: Request, ctx: UIContext = Depends(viewer)) -> Response:
    """The self-contained HTML of ``kogata monitor report``, sandboxed (its scripts run, nothing else)."""
    from kogata.ops.drift.status import monitor_report_file

    path = monitor_report_file(ui_state(request).home)
    if path is None:
        raise UIError(404, "err_no_monitor_report")
    return FileResponse(path, media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": REPORT_CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})
