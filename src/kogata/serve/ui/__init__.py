"""The web UI under ``/ui`` (issue 15): pages for people who do not write code, Japanese first.

``install(app)`` adds the pages (thin routes over the library: store, catalog, review queue, audit log, optimize
state), the static files (htmx and its SSE extension, vendored — see ``static/vendor/README.md``), the plotly bundle
of the ``plotly`` package, and sign-in (local users, roles viewer/reviewer/admin; required off loopback).
"""

from __future__ import annotations

from typing import Any


def install(app: Any) -> None:
    """Add the UI to ``app`` (the FastAPI app of :func:`kogata.serve.app.create_app`)."""
    from fastapi.responses import RedirectResponse
    from fastapi.staticfiles import StaticFiles

    from kogata.serve.ui import pages_main, pages_monitor, pages_playground, pages_review, pages_runs, pages_settings
    from kogata.serve.ui.web import STATIC, UIState, install_handlers

    state = app.state.kogata
    if state.store is None:  # an app assembled without a store (some unit tests): nothing for the UI to show
        return
    app.state.kogata_ui = UIState.open(state.store)
    install_handlers(app)
    for module in (pages_main, pages_monitor, pages_playground, pages_review, pages_runs, pages_settings):
        app.include_router(module.router, include_in_schema=False)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")

    @app.get("/ui", include_in_schema=False)
    def _ui_root() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)


def upload_path_limits() -> dict[str, int]:
    """Request-body backstops of the UI's upload routes (``BodyLimits`` streams multipart bodies there). Twice the
    file limit: the route itself refuses a body declared over the limit with a page that says so, which it can
    only do once its CSRF check has read the form; past the backstop the connection is cut with a plain 413."""
    from kogata.serve.ui.runs import UPLOAD_MAX_BYTES

    return {"/ui/runs/new": 2 * UPLOAD_MAX_BYTES}
