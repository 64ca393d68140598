"""What every UI page shares: the Jinja2 environment, the page frame (navigation by role), rendering with the
request's language and CSRF token, security headers, error pages, and the library objects the pages read
(review queue, audit log) found on the app or opened from the store."""

from __future__ import annotations

import functools
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from kogata.serve.ui.security import LoginRequired, Signer, UIContext, UIError, apply_cookies, context, load_secret
from kogata.serve.ui.users import UserStore

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

# (path, catalog key, the role it needs); the navigation shows what the user may open
NAV = (
    ("/ui/", "nav_home", "viewer"),
    ("/ui/models", "nav_models", "viewer"),
    ("/ui/playground", "nav_playground", "viewer"),
    ("/ui/review", "nav_review", "reviewer"),
    ("/ui/runs", "nav_runs", "viewer"),
    ("/ui/monitoring", "nav_monitoring", "viewer"),
    ("/ui/settings", "nav_settings", "admin"),
)

PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
            "connect-src 'self'; frame-src 'self'; frame-ancestors 'self'; form-action 'self'; base-uri 'none'; object-src 'none'")


@functools.cache
def environment() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=jinja2.select_autoescape(["html", "j2"]),
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["mib"] = lambda n: "-" if not n else f"{n / 2**20:,.1f}"
    env.filters["mparams"] = lambda n: "-" if not n else (f"{n / 1e6:,.1f}M" if n < 1e9 else f"{n / 1e9:,.2f}B")
    env.filters["when"] = lambda t: time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"
    env.filters["num"] = lambda v: "-" if v is None else f"{v:.3g}"
    env.filters["short"] = lambda s, n=80: s if len(s or "") <= n else (s or "")[: n - 1] + "…"
    return env


@dataclass
class UIState:
    """``app.state.kogata_ui``: the signer, users, jobs and lazily opened library objects."""

    home: Path
    signer: Signer
    users: UserStore
    jobs: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, store: Any) -> UIState:
        from kogata.serve.ui.jobs import Jobs

        return cls(home=Path(store.home), signer=Signer(load_secret(store.home)), users=UserStore(store.engine),
                   jobs=Jobs(Path(store.home) / "ui" / "jobs", store.home))


def serve_state(request: Request) -> Any:
    return request.app.state.kogata


def review_queue(request: Request) -> Any:
    """The server's review queue (``app.state.review``, else the oversight's), else one opened on the store."""
    app = request.app
    queue = getattr(app.state, "review", None)
    if queue is None:
        oversight = getattr(app.state.kogata, "oversight", None)
        queue = getattr(oversight, "review", None)
    if queue is None:
        ui = app.state.kogata_ui
        queue = ui.extra.get("review")
        if queue is None:
            from kogata.ops.review import ReviewQueue

            queue = ui.extra["review"] = ReviewQueue.open(ui.home, audit=audit_log(request))
    return queue


def audit_log(request: Request) -> Any:
    oversight = getattr(request.app.state.kogata, "oversight", None)
    log = getattr(oversight, "audit", None)
    if log is None:
        ui = request.app.state.kogata_ui
        log = ui.extra.get("audit")
        if log is None:
            from kogata.ops.audit import AuditLog

            store = request.app.state.kogata.store
            log = ui.extra["audit"] = AuditLog(store.engine, store.home)
    return log


def audit_action(request: Request, ctx: UIContext, endpoint: str, details: dict[str, Any], status: str = "ok") -> None:
    """One audit row for an admin action taken in the UI (``endpoint`` like ``ui.keys.create``)."""
    from kogata.ops.audit import AuditRecord

    client = request.client.host if request.client else None
    audit_log(request).append(AuditRecord(
        request_id=f"ui-{uuid.uuid4().hex[:16]}", key_name=f"ui:{ctx.user.name}" if ctx.user else None, endpoint=endpoint,
        status=status, input=details, output=None, meta={"role": ctx.user.role if ctx.user else None, "client": client},
    ))


def render(ctx: UIContext, template: str, status: int = 200, **view: Any) -> HTMLResponse:
    request = ctx.request
    path = request.url.path
    nav = [{"href": href, "label": ctx.t(key), "current": path == href or (href != "/ui/" and path.startswith(href))}
           for href, key, role in NAV if ctx.user is not None and ctx.user.can(role)]
    html = environment().get_template(template).render(
        t=ctx.t, lang=ctx.lang, user=ctx.user, csrf=ctx.csrf, nav=nav, path=path, login_required=ctx.login_required,
        other_lang="en" if ctx.lang == "ja" else "ja", **view)
    return finish(ctx, HTMLResponse(html, status_code=status))


def finish(ctx: UIContext, response: Response) -> Response:
    response.headers["Content-Security-Policy"] = PAGE_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Vary"] = "Cookie, Accept-Language"
    return apply_cookies(ctx, response)


def install_handlers(app: Any) -> None:
    async def ui_error(request: Request, exc: UIError) -> Response:
        ctx = context(request)
        message = ctx.t(exc.key, **exc.params)
        if "hx-request" in request.headers or request.headers.get("accept", "").startswith("application/json"):
            return finish(ctx, HTMLResponse(f'<p class="error" role="alert">{_escape(message)}</p>', status_code=exc.status))
        return render(ctx, "error.html.j2", status=exc.status, message=message, title=ctx.t("err_title"))

    async def login_required(request: Request, exc: LoginRequired) -> Response:
        from urllib.parse import quote

        return RedirectResponse(f"/ui/login?next={quote(exc.next_url, safe='')}", status_code=303)

    app.add_exception_handler(UIError, ui_error)
    app.add_exception_handler(LoginRequired, login_required)


def _escape(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


def safe_next(url: str | None) -> str:
    """Only a path inside the UI may be a redirect target after sign-in (no open redirect)."""
    if not url or not url.startswith("/ui") or url.startswith("//") or "\\" in url:
        return "/ui/"
    return url
