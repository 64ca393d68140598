"""Settings (admin): API keys (create — the secret is shown once —, revoke, usage) and the UI's users.
Every change is an audit row (``ui.keys.create``, ``ui.keys.revoke``, ``ui.users.add``, ``ui.users.remove``,
``ui.users.role``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from kogata.core.errors import KogataError
from kogata.serve.ui.security import UIContext, admin, check_csrf, ui_state
from kogata.serve.ui.users import ROLES
from kogata.serve.ui.web import audit_action, render, serve_state

router = APIRouter(prefix="/ui/settings")


def _page(ctx: UIContext, request: Request, *, status: int = 200, **extra: Any) -> Response:
    keys = serve_state(request).keys
    key_rows = keys.list() if keys is not None else []
    usage = {u["id"]: u for u in keys.usage()} if keys is not None else {}
    for k in key_rows:
        k["usage"] = usage.get(k["id"], {"requests": 0, "tokens_in": 0, "tokens_out": 0})
    view = {"keys": key_rows, "users": ui_state(request).users.list(), "roles": ROLES, "new_token": None, "key_error": None,
            "user_error": None, "message": None, "form": {}}
    view.update(extra)
    return render(ctx, "settings.html.j2", status=status, title=ctx.t("settings_title"), **view)


@router.get("")
def settings_page(request: Request, ctx: UIContext = Depends(admin)) -> Response:
    return _page(ctx, request)


def _limit(raw: str, label: str) -> int | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise KogataError(f"{label} must be a whole number, got {raw[:20]!r}", f"leave {label} empty for no limit") from None


@router.post("/keys")
def create_key(request: Request, name: str = Form(""), rpm: str = Form(""), tpm: str = Form(""), admin_box: str = Form("", alias="admin"),
               ctx: UIContext = Depends(admin), _csrf: UIContext = Depends(check_csrf)) -> Response:
    keys = serve_state(request).keys
    try:
        who, token = keys.create(name.strip(), rpm=_limit(rpm, "rpm"), tpm=_limit(tpm, "tpm"), admin=bool(admin_box))
    except KogataError as exc:
        return _page(ctx, request, status=400, key_error=str(exc), form={"name": name, "rpm": rpm, "tpm": tpm})
    audit_action(request, ctx, "ui.keys.create", {"key": who.name, "rpm": who.rpm, "tpm": who.tpm, "admin": who.admin})
    return _page(ctx, request, new_token={"name": who.name, "token": token})


@router.post("/keys/{key_id}/revoke")
def revoke_key(request: Request, key_id: str, ctx: UIContext = Depends(admin), _csrf: UIContext = Depends(check_csrf)) -> Response:
    try:
        name = serve_state(request).keys.revoke(key_id)
    except KogataError as exc:
        return _page(ctx, request, status=404, key_error=str(exc))
    audit_action(request, ctx, "ui.keys.revoke", {"key": name, "id": key_id})
    return _page(ctx, request, message=ctx.t("key_revoked", name=name))


@router.post("/users")
def add_user(request: Request, name: str = Form(""), password: str = Form(""), role: str = Form("viewer"),
             ctx: UIContext = Depends(admin), _csrf: UIContext = Depends(check_csrf)) -> Response:
    try:
        user = ui_state(request).users.add(name.strip(), password, role)
    except KogataError as exc:
        return _page(ctx, request, status=400, user_error=str(exc), form={"user_name": name, "role": role})
    audit_action(request, ctx, "ui.users.add", {"user": user.name, "role": user.role})
    return _page(ctx, request, message=ctx.t("user_added", name=user.name))


@router.post("/users/{name}/remove")
def remove_user(request: Request, name: str, ctx: UIContext = Depends(admin), _csrf: UIContext = Depends(check_csrf)) -> Response:
    if ctx.user is not None and name == ctx.user.name:
        return _page(ctx, request, status=400, user_error=ctx.t("err_remove_self"))
    try:
        ui_state(request).users.remove(name)
    except KogataError as exc:
        return _page(ctx, request, status=404, user_error=str(exc))
    audit_action(request, ctx, "ui.users.remove", {"user": name})
    return _page(ctx, request, message=ctx.t("user_removed", name=name))


@router.post("/users/{name}/role")
def set_role(request: Request, name: str, role: str = Form(...), ctx: UIContext = Depends(admin),
             _csrf: UIContext = Depends(check_csrf)) -> Response:
    try:
        user = ui_state(request).users.set_role(name, role)
    except KogataError as exc:
        return _page(ctx, request, status=400, user_error=str(exc))
    audit_action(request, ctx, "ui.users.role", {"user": user.name, "role": user.role})
    return _page(ctx, request, message=ctx.t("user_role_set", name=user.name, role=ctx.t("role_" + user.role)))
