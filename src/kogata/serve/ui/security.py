"""Who is looking at the UI, and whether a form post is theirs.

- **Sessions**: a signed cookie ``kogata_session`` (HMAC-SHA256 with a 32-byte key kept in ``$KOGATA_HOME/ui/secret.key``,
  mode 0600) holding the user name, the issue time and a random nonce; ``HttpOnly``, ``SameSite=Lax``, ``Secure``
  over HTTPS, valid 12 hours. The user is looked up on every request, so a removed user or a changed role takes
  effect at once.
- **Login** is required whenever the server is bound off loopback. On a loopback-only server a client on this
  machine is the implicit ``local`` admin (as the API treats keyless loopback clients), unless signed in.
- **CSRF**: every form and htmx post carries ``csrf_token`` (a hidden field, or the ``X-CSRF-Token`` header) =
  HMAC(key, nonce), where the nonce is the session's, or an anonymous ``kogata_csrf`` cookie's before sign-in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request

from kogata.serve.config import is_loopback
from kogata.serve.ui.i18n import COOKIE as LANG_COOKIE
from kogata.serve.ui.i18n import Translator, negotiate
from kogata.serve.ui.users import LOCAL_ADMIN, User

SESSION_COOKIE = "kogata_session"
CSRF_COOKIE = "kogata_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SESSION_S = 12 * 3600


class UIError(Exception):
    """An error page (or htmx fragment) with a catalog message: ``status``, ``key`` and its parameters."""

    def __init__(self, status: int, key: str, **params: Any):
        super().__init__(key)
        self.status, self.key, self.params = status, key, params


class LoginRequired(Exception):
    def __init__(self, next_url: str):
        super().__init__(next_url)
        self.next_url = next_url


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_secret(home: Path) -> bytes:
    """The signing key of this store's UI (made once, readable by its owner only)."""
    path = Path(home) / "ui" / "secret.key"
    if path.is_file():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_bytes()
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


class Signer:
    def __init__(self, key: bytes):
        self.key = key

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self.key, payload.encode("ascii"), hashlib.sha256).digest())

    def session(self, user: str) -> tuple[str, str]:
        """(cookie value, nonce) of a new session for ``user``."""
        nonce = secrets.token_urlsafe(16)
        payload = _b64(json.dumps({"u": user, "t": int(time.time()), "n": nonce}, separators=(",", ":")).encode("utf-8"))
        return f"{payload}.{self._mac(payload)}", nonce

    def read_session(self, value: str | None, *, now: float | None = None) -> dict[str, Any] | None:
        if not value or value.count(".") != 1:
            return None
        payload, mac = value.split(".")
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            data = json.loads(_unb64(payload))
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(data, dict) or (now or time.time()) - float(data.get("t", 0)) > SESSION_S:
            return None
        return data

    def csrf(self, nonce: str) -> str:
        return self._mac("csrf:" + _b64(nonce.encode("utf-8")))


@dataclass
class UIContext:
    """Per request: language, user (None: signed out), CSRF token, and cookies the response must set."""

    request: Request
    t: Translator
    user: User | None
    csrf: str
    login_required: bool
    set_cookies: list[tuple[str, str, int]] = field(default_factory=list)  # (name, value, max_age); max_age 0 deletes

    @property
    def lang(self) -> str:
        return self.t.lang


def ui_state(request: Request) -> Any:
    return request.app.state.kogata_ui


def login_required(request: Request) -> bool:
    return not is_loopback(request.app.state.kogata.config.host)


def context(request: Request) -> UIContext:
    """The :class:`UIContext` of ``request`` (computed once per request)."""
    cached = getattr(request.state, "ui_ctx", None)
    if cached is not None:
        return cached
    ui = ui_state(request)
    lang, remember = negotiate(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE),
                               request.headers.get("accept-language"))
    cookies: list[tuple[str, str, int]] = []
    if remember:
        cookies.append((LANG_COOKIE, lang, 365 * 86400))
    required = login_required(request)
    user: User | None = None
    nonce: str | None = None
    data = ui.signer.read_session(request.cookies.get(SESSION_COOKIE))
    if data is not None:
        user = ui.users.get(str(data.get("u")))
        nonce = str(data.get("n")) if user is not None else None
    if user is None and not required:
        client = request.client.host if request.client else ""
        if is_loopback(client) or client == "testclient":
            user = LOCAL_ADMIN
    if nonce is None:
        nonce = request.cookies.get(CSRF_COOKIE) or ""
        if len(nonce) < 16:
            nonce = secrets.token_urlsafe(16)
            cookies.append((CSRF_COOKIE, nonce, SESSION_S))
    ctx = UIContext(request=request, t=Translator(lang), user=user, csrf=ui.signer.csrf(nonce), login_required=required,
                    set_cookies=cookies)
    request.state.ui_ctx = ctx
    return ctx


def apply_cookies(ctx: UIContext, response: Any) -> Any:
    secure = ctx.request.url.scheme == "https"
    for name, value, max_age in ctx.set_cookies:
        if max_age <= 0:
            response.delete_cookie(name, path="/ui", httponly=True, samesite="lax", secure=secure)
        else:
            response.set_cookie(name, value, max_age=max_age, path="/ui", httponly=True, samesite="lax", secure=secure)
    return response


async def check_csrf(request: Request) -> UIContext:
    """Dependency of every state-changing UI route: the token must match this visitor's (403 otherwise)."""
    ctx = context(request)
    sent = request.headers.get(CSRF_HEADER)
    if not sent:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent, ctx.csrf):
        raise UIError(403, "err_csrf")
    return ctx


def need(role: str):
    """A dependency: the signed-in user with at least ``role`` (GET without a user → the login page)."""

    def dependency(request: Request) -> UIContext:
        ctx = context(request)
        if ctx.user is None:
            if request.method == "GET" and "hx-request" not in request.headers:
                raise LoginRequired(str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""))
            raise UIError(401, "err_login")
        if not ctx.user.can(role):
            raise UIError(403, "err_role", role=ctx.t(f"role_{role}"))
        return ctx

    return dependency


viewer = need("viewer")
reviewer = need("reviewer")
admin = need("admin")
