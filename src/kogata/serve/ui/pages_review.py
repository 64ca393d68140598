"""The review queue: one open item at a time, its guard findings marked in the text; approve, correct or reject
(keys A / C / R, J / K to move). Decisions go through :class:`~kogata.ops.review.ReviewQueue` with the item
version the reviewer saw, so a second reviewer's stale decision is refused with the queue's own message."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from kogata.core.errors import KogataError
from kogata.serve.ui.security import UIContext, UIError, check_csrf, reviewer
from kogata.serve.ui.web import render, review_queue

router = APIRouter(prefix="/ui/review")
ACTIONS = ("approve", "correct", "reject")
MAX_CORRECTION = 20_000
PAGE = 200


def segments(text: str, hits: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """``text`` cut into (piece, finding type or None) so the template can mark what the guard found."""
    marks: list[tuple[int, int, str]] = []
    for h in hits:
        try:
            start, end = int(h["start"]), int(h["end"])
        except (KeyError, TypeError, ValueError):
            continue
        if 0 <= start < end <= len(text):
            marks.append((start, end, str(h.get("type") or h.get("check") or "")))
    out: list[tuple[str, str | None]] = []
    pos = 0
    for start, end, kind in sorted(marks):
        if start < pos:
            continue  # overlapping finding: the first one is shown
        if start > pos:
            out.append((text[pos:start], None))
        out.append((text[start:end], kind))
        pos = end
    if pos < len(text):
        out.append((text[pos:], None))
    return out


def findings(details: dict[str, Any], where: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(fired checks, their hits) of the ``input`` or ``output`` verdict in an item's details."""
    verdicts = (details or {}).get("verdicts") or {}
    v = verdicts.get(where) if isinstance(verdicts, dict) else None
    checks = (v or {}).get("checks") if isinstance(v, dict) else None
    fired, hits = [], []
    for c in checks or []:
        if isinstance(c, dict) and c.get("fired"):
            fired.append({"check": c.get("check"), "action": c.get("action")})
            hits.extend({**h, "check": c.get("check")} for h in c.get("hits") or [] if isinstance(h, dict))
    return fired, hits


def view_item(item: Any) -> dict[str, Any]:
    prompt = item.prompt
    if isinstance(prompt, list):
        turns = [{"role": str(m.get("role", "")), "content": str(m.get("content", ""))} for m in prompt if isinstance(m, dict)]
    else:
        turns = [{"role": "user", "content": str(prompt)}]
    in_fired, in_hits = findings(item.details, "input")
    out_fired, out_hits = findings(item.details, "output")
    last_user = max((i for i, m in enumerate(turns) if m["role"] == "user"), default=None)
    for i, m in enumerate(turns):
        m["segments"] = segments(m["content"], in_hits if i == last_user else [])
    return {"item": item, "turns": turns, "answer": segments(item.original, out_hits), "fired": in_fired + out_fired}


def _page(ctx: UIContext, request: Request, item_id: int | None, *, message: str | None = None, error: str | None = None,
          status: int = 200, fragment: bool = False) -> Response:
    queue = review_queue(request)
    items = queue.list(state="open", limit=PAGE)
    current = None
    if item_id is not None:
        try:
            current = queue.get(item_id)
        except KogataError:
            current = None
    if current is None or (current.state != "open" and not error):
        current = items[0] if items else None
    ids = [i.id for i in items]
    pos = ids.index(current.id) if current is not None and current.id in ids else -1
    pager = {"prev": ids[pos - 1] if pos > 0 else None, "next": ids[pos + 1] if 0 <= pos < len(ids) - 1 else None}
    view = {"items": items, "current": view_item(current) if current else None, "pager": pager, "message": message, "error": error}
    template = "fragments/review_panel.html.j2" if fragment else "review.html.j2"
    return render(ctx, template, status=status, title=ctx.t("review_title"), **view)


@router.get("")
def review_page(request: Request, item: int | None = None, ctx: UIContext = Depends(reviewer)) -> Response:
    return _page(ctx, request, item, fragment="hx-request" in request.headers and "hx-boosted" not in request.headers)


@router.post("/{item_id}/{action}")
def decide(request: Request, item_id: int, action: str, version: int = Form(...), text: str = Form(""), reason: str = Form(""),
           ctx: UIContext = Depends(reviewer), _csrf: UIContext = Depends(check_csrf)) -> Response:
    from kogata.ops.review import ReviewConflict

    if action not in ACTIONS:
        raise UIError(404, "err_not_found")
    if len(text) > MAX_CORRECTION:
        raise UIError(400, "err_correction_long", n=MAX_CORRECTION)
    queue = review_queue(request)
    reviewer = ctx.user.name if ctx.user else "ui"
    htmx = "hx-request" in request.headers
    try:
        if action == "approve":
            done = queue.approve(item_id, reviewer, reason or None, version=version)
        elif action == "reject":
            done = queue.reject(item_id, reviewer, reason or None, version=version)
        else:
            if not text.strip():
                return _page(ctx, request, item_id, error=ctx.t("err_correction_empty"), status=400, fragment=htmx)
            done = queue.correct(item_id, reviewer, text, reason or None, version=version)
    except ReviewConflict as exc:
        return _page(ctx, request, item_id, error=str(exc), status=409, fragment=htmx)
    except KogataError as exc:
        return _page(ctx, request, None, error=str(exc), status=400, fragment=htmx)
    message = ctx.t(f"review_done_{done.state}", id=done.id)
    if not htmx:
        return RedirectResponse("/ui/review", status_code=303)
    return _page(ctx, request, None, message=message, fragment=True)
