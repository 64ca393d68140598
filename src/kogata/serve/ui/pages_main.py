"""Home, sign-in, models (catalog, store, lineage, pulls) and the plotly bundle; the playground is in
``pages_playground``, monitoring in ``pages_monitor``."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from kogata.serve.ui.security import SESSION_COOKIE, SESSION_S, UIContext, UIError, admin, check_csrf, context, ui_state, viewer
from kogata.serve.ui.web import audit_action, finish, render, safe_next, serve_state

router = APIRouter(prefix="/ui")


# ---- sign-in ----------------------------------------------------------------------------------------
@router.get("/login")
def login_page(request: Request, next: str = "/ui/") -> Response:
    ctx = context(request)
    return render(ctx, "login.html.j2", title=ctx.t("login_title"), next=safe_next(next), error=None, name="",
                  no_users=ui_state(request).users.count() == 0)


@router.post("/login")
def login(request: Request, ctx: UIContext = Depends(check_csrf), name: str = Form(""), password: str = Form(""),
          next: str = Form("/ui/")) -> Response:
    ui = ui_state(request)
    user = ui.users.verify(name.strip(), password) if name.strip() and password else None
    if user is None:
        return render(ctx, "login.html.j2", status=401, title=ctx.t("login_title"), next=safe_next(next), name=name[:64],
                      error=ctx.t("login_failed"), no_users=ui.users.count() == 0)
    value, _nonce = ui.signer.session(user.name)
    ctx.set_cookies.append((SESSION_COOKIE, value, SESSION_S))
    return finish(ctx, RedirectResponse(safe_next(next), status_code=303))


@router.post("/logout")
def logout(request: Request, ctx: UIContext = Depends(check_csrf)) -> Response:
    ctx.set_cookies.append((SESSION_COOKIE, "", 0))
    return finish(ctx, RedirectResponse("/ui/login", status_code=303))


# ---- home -------------------------------------------------------------------------------------------
def served_models(request: Request) -> list[dict[str, Any]]:
    state = serve_state(request)
    out = []
    for alias, m in sorted(state.models.routes().items()):
        out.append({"alias": alias, "name": m.artifact.name, "id": m.id, "kind": m.kind, "since": m.loaded_at,
                    "inflight": m.inflight()})
    return out


def traffic_today(request: Request) -> dict[str, Any]:
    """Requests and tokens since local midnight, from the audit log (one row per exchange), by hour."""
    from sqlalchemy import select

    from kogata.ops.tables import AuditRow

    state = serve_state(request)
    lt = time.localtime()
    midnight = time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, 0, 0, 0, 0, 0, -1))
    hours = [0] * 24
    total = {"requests": 0, "tokens_in": 0, "tokens_out": 0}
    if state.store is None:
        return {"hours": hours, **total}
    stmt = (select(AuditRow.time_us, AuditRow.tokens_in, AuditRow.tokens_out)
            .where(AuditRow.time_us >= int(midnight * 1e6), AuditRow.endpoint.in_(("chat.completions", "completions"))))
    with state.store.engine.connect() as conn:
        for t_us, tin, tout in conn.execute(stmt):
            hours[time.localtime(t_us / 1e6).tm_hour] += 1
            total["requests"] += 1
            total["tokens_in"] += tin or 0
            total["tokens_out"] += tout or 0
    return {"hours": hours, **total}


def open_review_count(request: Request) -> int:
    from sqlalchemy import func, select

    from kogata.ops.tables import ReviewItemRow

    state = serve_state(request)
    if state.store is None:
        return 0
    with state.store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(ReviewItemRow).where(ReviewItemRow.state == "open")).scalar_one())


@router.get("/")
def home(request: Request, ctx: UIContext = Depends(viewer)) -> Response:
    state = serve_state(request)
    models = state.models
    health = "error" if models.error else ("loading" if models.loading else "ready")
    runs = ui_state(request).jobs.list("optimize")[:3]
    drift = None
    if state.drift is not None:
        drift = {"alert": bool(state.drift.alerts), "verdict": state.drift.verdict(ctx.lang)}
    return render(ctx, "home.html.j2", title=ctx.t("home_title"), served=served_models(request), health=health,
                  health_error=models.error, traffic=traffic_today(request), open_reviews=open_review_count(request), runs=runs,
                  drift=drift, monitor_configured=state.config.monitor is not None)


# ---- models -----------------------------------------------------------------------------------------
def lineage_forest(artifacts: list[Any]) -> list[dict[str, Any]]:
    """The store's artifacts as trees: each artifact under the one it was made from."""
    by_id = {a.id: a for a in artifacts}
    nodes = {a.id: {"art": a, "steps": [s.get("method", "?") for s in a.lineage], "children": []} for a in artifacts}
    roots = []
    for a in artifacts:
        if a.parent and a.parent in by_id:
            nodes[a.parent]["children"].append(nodes[a.id])
        else:
            roots.append(nodes[a.id])
    return roots


@router.get("/models")
def models_page(request: Request, ctx: UIContext = Depends(viewer)) -> Response:
    from kogata.artifacts.catalog import CATALOG

    store = serve_state(request).store
    artifacts = store.list() if store is not None else []
    names = {a.name for a in artifacts}
    pulls = {j["meta"].get("model"): j for j in ui_state(request).jobs.list("pull")}
    catalog = [{"name": e.name, "title": e.title, "kind": e.kind, "licence": e.licence, "params": e.params,
                "languages": e.languages, "in_store": e.name in names, "pull": pulls.get(e.name)} for e in CATALOG.values()]
    return render(ctx, "models.html.j2", title=ctx.t("models_title"), forest=lineage_forest(artifacts), catalog=catalog,
                  count=len(artifacts))


@router.post("/models/pull")
def pull_model(request: Request, name: str = Form(...), ctx: UIContext = Depends(admin),
               _csrf: UIContext = Depends(check_csrf)) -> Response:
    from kogata.artifacts.catalog import CATALOG

    if name not in CATALOG:
        raise UIError(400, "err_unknown_model", name=name[:100])
    jobs = ui_state(request).jobs
    running = [j for j in jobs.list("pull") if j["meta"].get("model") == name and j["status"] == "running"]
    job = running[0] if running else jobs.start("pull", name, ["models", "pull", name], meta={"model": name})
    if not running:
        audit_action(request, ctx, "ui.models.pull", {"model": name, "job": job["id"]})
    return render(ctx, "fragments/job_progress.html.j2", job=job, lines=jobs.log_tail(job["id"]), progress=None)


# ---- assets -----------------------------------------------------------------------------------------
@router.get("/assets/plotly.min.js")
def plotly_js(request: Request) -> Response:
    """The plotly.js bundle that ships inside the ``plotly`` Python package (no CDN)."""
    from plotly.offline import get_plotlyjs

    return Response(get_plotlyjs(), media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"})
