"""Runs: the new-run wizard, the list, one run's live progress (server-sent events read from the stored state),
cancel / resume, the report in the page, and "serve this" (an admin hot swap through the served model set)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from kogata.core.errors import KogataError
from kogata.serve.ui import runs as lib
from kogata.serve.ui.security import UIContext, UIError, admin, check_csrf, context, ui_state, viewer
from kogata.serve.ui.web import audit_action, environment, finish, render, serve_state

router = APIRouter(prefix="/ui")
SSE_POLL_S = 0.5
SSE_MAX_S = 300.0  # one event stream lasts at most this long; the browser reconnects by itself
REPORT_CSP = "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:"


def _job(request: Request, job_id: str) -> dict[str, Any]:
    try:
        return ui_state(request).jobs.get(job_id)
    except KogataError:
        raise UIError(404, "err_not_found") from None


def _out_dir(job: dict[str, Any]) -> Path:
    return Path(job["meta"]["out"])


def job_view(request: Request, job: dict[str, Any], lang: str = "ja") -> dict[str, Any]:
    jobs = ui_state(request).jobs
    view: dict[str, Any] = {"job": job, "lines": jobs.log_tail(job["id"]), "progress": None, "results": None}
    if job["kind"] == "optimize":
        store = serve_state(request).store
        view["progress"] = lib.progress(store, job["meta"]["project"], lang)
        view["results"] = lib.results(_out_dir(job))
    return view


# ---- list and wizard --------------------------------------------------------------------------------
@router.get("/runs")
def runs_page(request: Request, ctx: UIContext = Depends(viewer)) -> Response:
    store = serve_state(request).store
    rows = []
    for job in ui_state(request).jobs.list("optimize"):
        rows.append({"job": job, "progress": lib.progress(store, job["meta"]["project"], ctx.lang)})
    return render(ctx, "runs.html.j2", title=ctx.t("runs_title"), rows=rows)


def _wizard(ctx: UIContext, request: Request, *, values: dict[str, Any], errors: dict[str, str], status: int = 200) -> Response:
    home = ui_state(request).home
    all_suites = lib.suites(home)
    chosen = next((s for s in all_suites if s["name"] == values.get("suite")), None) or next(
        (s for s in all_suites if s["language"] == ctx.lang), all_suites[0])
    values.setdefault("suite", chosen["name"])
    kpis = lib.kpi_fields(chosen)
    for k in kpis:
        if k["field"] in values:
            k["value"] = values[k["field"]]
    limit = upload_limit(request)
    return render(ctx, "run_new.html.j2", status=status, title=ctx.t("wizard_title"), bases=lib.base_models(serve_state(request).store),
                  suites=all_suites, kpis=kpis, values=values, errors=errors, upload_max=limit, upload_mb=lib.megabytes(limit))


def upload_limit(request: Request) -> int:
    """The wizard's file limit: the upload route has its own request-body limit (``ui.upload_path_limits``)."""
    return lib.UPLOAD_MAX_BYTES


@router.get("/runs/new")
def wizard(request: Request, suite: str | None = None, ctx: UIContext = Depends(admin)) -> Response:
    values: dict[str, Any] = {"base": "smollm2-135m", "budget": 15, "limit": 20}
    if suite:
        values["suite"] = suite
    return _wizard(ctx, request, values=values, errors={})


@router.get("/runs/new/kpis")
def wizard_kpis(request: Request, suite: str, ctx: UIContext = Depends(admin)) -> Response:
    try:
        chosen = lib.find_suite(ui_state(request).home, suite)
    except KogataError:
        raise UIError(404, "err_not_found") from None
    return render(ctx, "fragments/kpi_fields.html.j2", kpis=lib.kpi_fields(chosen), errors={})


def _number(form: Any, name: str, errors: dict[str, str], t: Any, *, kind: type = float, low: float | None = None,
            high: float | None = None, optional: bool = False) -> Any:
    raw = str(form.get(name) or "").strip()
    if not raw and optional:
        return None
    try:
        value = kind(raw)
    except ValueError:
        errors[name] = t("err_number", value=raw[:40] or "—")
        return None
    if (low is not None and value < low) or (high is not None and value > high):
        errors[name] = t("err_range", low=low, high=high)
        return None
    return value


@router.post("/runs/new")
async def start_run(request: Request, ctx: UIContext = Depends(admin), _csrf: UIContext = Depends(check_csrf)) -> Response:
    from starlette.datastructures import UploadFile

    t = ctx.t
    upload_max = upload_limit(request)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > upload_max + lib.FORM_ROOM_BYTES:  # refused before a byte of it is stored
        return _wizard(ctx, request, values={"base": "", "budget": 15, "limit": 20}, status=413,
                       errors={"data": t("err_upload_too_large", mb=lib.megabytes(upload_max))})
    form = await request.form()
    ui = ui_state(request)
    store = serve_state(request).store
    values = {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}
    errors: dict[str, str] = {}
    bases = {b["name"] for b in lib.base_models(store)}
    base = values.get("base", "")
    if base not in bases:
        errors["base"] = t("err_base")
    try:
        suite = lib.find_suite(ui.home, values.get("suite", ""))
    except KogataError:
        suite = None
        errors["suite"] = t("err_suite")
    budget = _number(form, "budget", errors, t, low=1, high=24 * 60)
    limit = _number(form, "limit", errors, t, kind=int, low=2, high=100000, optional=True)
    kpis: dict[str, dict[str, float]] = {"min": {}, "max": {}}
    if suite is not None:
        for k in lib.kpi_fields(suite):
            value = _number(form, k["field"], errors, t, optional=True)
            if value is not None:
                kpis[k["side"]][k["metric"]] = value
    upload = form.get("data")
    job_id, folder = ui.jobs.new_folder()
    data: list[Path] = []
    if isinstance(upload, UploadFile) and upload.filename:
        try:  # the form parser spooled the file to disk; it is copied in pieces and cut off at the limit
            data.append(await run_in_threadpool(lib.save_upload, upload.filename, upload.file, folder / "data", upload_max))
        except lib.UploadTooLarge:
            errors["data"] = t("err_upload_too_large", mb=lib.megabytes(upload_max))
        except KogataError as exc:
            errors["data"] = str(exc)
    project = None
    if not errors and suite is not None:
        try:
            project = await run_in_threadpool(
                lib.write_project, folder, name=f"ui-{job_id}", base=base, suite=suite, kpis=kpis, language=ctx.lang,
                budget_minutes=budget, limit=limit, data=data)
        except KogataError as exc:
            errors["form"] = str(exc)
    if errors:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        return _wizard(ctx, request, values=values, errors=errors, status=400)
    out = folder / "out"
    meta = {"project": str(project), "out": str(out), "base": base, "suite": suite["name"] if suite else ""}
    job = ui.jobs.start("optimize", f"{base} · {meta['suite']}", ["optimize", str(project), "--out", str(out)], folder=folder,
                        job_id=job_id, meta=meta)
    audit_action(request, ctx, "ui.runs.start", {"job": job["id"], "base": base, "suite": meta["suite"], "budget_minutes": budget})
    return finish(ctx, RedirectResponse(f"/ui/runs/{job['id']}", status_code=303))


# ---- one run ----------------------------------------------------------------------------------------
@router.get("/runs/{job_id}")
def run_page(request: Request, job_id: str, ctx: UIContext = Depends(viewer)) -> Response:
    job = _job(request, job_id)
    if job["kind"] != "optimize":
        raise UIError(404, "err_not_found")
    return render(ctx, "run.html.j2", title=ctx.t("run_title", title=job["title"]), **job_view(request, job, ctx.lang))


@router.get("/jobs/{job_id}/events")
async def job_events(request: Request, job_id: str, ctx: UIContext = Depends(viewer)) -> Response:
    """``event: progress`` (an HTML fragment) whenever the stored state changes; ``event: done`` when the job ended."""
    _job(request, job_id)
    template = environment().get_template("fragments/job_body.html.j2")

    def snapshot() -> tuple[str, bool]:
        job = ui_state(request).jobs.get(job_id)
        html = template.render(t=ctx.t, lang=ctx.lang, user=ctx.user, csrf=ctx.csrf, **job_view(request, job, ctx.lang))
        return "\n".join(f"data: {line}" for line in html.splitlines() if line.strip()), job["status"] != "running"

    async def stream():
        last = None
        started = time.monotonic()
        while time.monotonic() - started < SSE_MAX_S:
            html, ended = await run_in_threadpool(snapshot)
            if html != last:
                yield f"event: progress\n{html}\n\n"
                last = html
            if ended:
                yield "event: done\ndata: done\n\n"
                return
            if await request.is_disconnected():
                return
            await asyncio.sleep(SSE_POLL_S)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/runs/{job_id}/cancel")
def cancel_run(request: Request, job_id: str, ctx: UIContext = Depends(admin), _csrf: UIContext = Depends(check_csrf)) -> Response:
    return _run_action(request, ctx, job_id, "cancel")


@router.post("/runs/{job_id}/resume")
def resume_run(request: Request, job_id: str, ctx: UIContext = Depends(admin), _csrf: UIContext = Depends(check_csrf)) -> Response:
    return _run_action(request, ctx, job_id, "resume")


def _run_action(request: Request, ctx: UIContext, job_id: str, action: str) -> Response:
    _job(request, job_id)
    jobs = ui_state(request).jobs
    try:
        job = jobs.cancel(job_id) if action == "cancel" else jobs.resume(job_id)
    except KogataError as exc:
        raise UIError(409, "err_job", problem=str(exc)) from None
    audit_action(request, ctx, f"ui.runs.{action}", {"job": job_id, "status": job["status"]})
    if "hx-request" in request.headers:
        return render(ctx, "fragments/job_progress.html.j2", **job_view(request, job, ctx.lang))
    return finish(ctx, RedirectResponse(f"/ui/runs/{job_id}", status_code=303))


# ---- the report ---------------------------------------------------------------------------------------
@router.get("/runs/{job_id}/report")
def report_page(request: Request, job_id: str, ctx: UIContext = Depends(viewer)) -> Response:
    job = _job(request, job_id)
    res = lib.results(_out_dir(job)) if job["kind"] == "optimize" else None
    if res is None:
        raise UIError(404, "err_no_report")
    aliases = sorted(a for a, m in serve_state(request).models.routes().items() if m.kind == "lm")
    return render(ctx, "report.html.j2", title=ctx.t("report_title"), job=job, results=res, aliases=aliases, message=None)


@router.get("/runs/{job_id}/report.html")
def report_file(request: Request, job_id: str, ctx: UIContext = Depends(viewer)) -> Response:
    job = _job(request, job_id)
    path = _out_dir(job) / "report.html"
    if job["kind"] != "optimize" or not path.is_file():
        raise UIError(404, "err_no_report")
    return FileResponse(path, media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": REPORT_CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})


@router.post("/runs/{job_id}/serve")
async def serve_this(request: Request, job_id: str, ctx: UIContext = Depends(admin),
                     _csrf: UIContext = Depends(check_csrf)) -> Response:
    form = await request.form()
    job = _job(request, job_id)
    res = lib.results(_out_dir(job)) if job["kind"] == "optimize" else None
    if res is None or res["recommended"] is None:
        raise UIError(409, "err_nothing_to_serve")
    state = serve_state(request)
    alias = str(form.get("alias") or "")
    if alias not in state.models.routes():
        raise UIError(400, "err_alias", alias=alias[:100])
    art_id = res["recommended"]["artifact_id"]
    by = f"ui:{ctx.user.name}" if ctx.user else "ui"
    try:
        out = await run_in_threadpool(state.models.swap, alias, art_id, by=by, reason=f"optimize run {job_id} (web UI)")
    except KogataError as exc:
        audit_action(request, ctx, "ui.models.serve", {"job": job_id, "alias": alias, "artifact": art_id, "error": str(exc)}, status="error")
        raise UIError(400, "err_job", problem=str(exc)) from None
    audit_action(request, ctx, "ui.models.serve", {"job": job_id, "alias": alias, "artifact": art_id, "previous": out.get("previous_id")})
    ctx2 = context(request)
    aliases = sorted(a for a, m in state.models.routes().items() if m.kind == "lm")
    return render(ctx2, "report.html.j2", title=ctx.t("report_title"), job=job, results=res, aliases=aliases,
                  message=ctx.t("serve_done", alias=alias, artifact=res["recommended"]["artifact"]))
