"""Sign-in, roles, sessions and CSRF of the UI, in process (FastAPI's TestClient): sign-in required when the
server is configured off loopback, roles enforced, session cookies HttpOnly + SameSite=Lax and tamper-proof, every
post refused without its CSRF token, no open redirect after sign-in, admin actions written to the audit log."""

from __future__ import annotations

import re

import pytest

from tests.ui.conftest import PASSWORDS


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


def sign_in(c, name: str) -> str:
    c.cookies.clear()
    token = csrf_of(c.get("/ui/login").text)
    r = c.post("/ui/login", data={"csrf_token": token, "name": name, "password": PASSWORDS[name], "next": "/ui/"},
               follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/", r.text[:300]
    return csrf_of(c.get("/ui/").text)


def test_off_loopback_every_page_needs_sign_in(offloop_client):
    c = offloop_client
    c.cookies.clear()
    r = c.get("/ui/models", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=%2Fui%2Fmodels"
    assert c.post("/ui/review/1/approve", data={"version": 1}, headers={"hx-request": "true"}).status_code in (401, 403)


def test_wrong_password_and_unknown_user_are_refused_alike(offloop_client):
    c = offloop_client
    c.cookies.clear()
    token = csrf_of(c.get("/ui/login").text)
    a = c.post("/ui/login", data={"csrf_token": token, "name": "ada", "password": "not her password"}, follow_redirects=False)
    b = c.post("/ui/login", data={"csrf_token": token, "name": "nobody", "password": "not her password"}, follow_redirects=False)
    assert a.status_code == b.status_code == 401
    assert "kogata_session" not in a.cookies and "kogata_session" not in b.cookies


def test_session_cookie_flags_and_tampering(offloop_client):
    c = offloop_client
    c.cookies.clear()
    token = csrf_of(c.get("/ui/login").text)
    r = c.post("/ui/login", data={"csrf_token": token, "name": "vic", "password": PASSWORDS["vic"]}, follow_redirects=False)
    header = next(v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith("kogata_session="))
    assert "HttpOnly" in header and "SameSite=lax" in header.lower().replace("samesite=lax", "SameSite=lax")
    assert c.get("/ui/", follow_redirects=False).status_code == 200
    value = c.cookies.get("kogata_session")
    payload, mac = value.split(".")
    c.cookies.clear()
    c.cookies.set("kogata_session", value)
    assert c.get("/ui/", follow_redirects=False).status_code == 200  # the genuine cookie, set the same way, works
    c.cookies.clear()
    c.cookies.set("kogata_session", payload[:-2] + "xx." + mac)
    assert c.get("/ui/", follow_redirects=False).status_code == 303  # a forged session is no session


@pytest.mark.parametrize("user, path, status", [
    ("vic", "/ui/", 200), ("vic", "/ui/review", 403), ("vic", "/ui/settings", 403), ("vic", "/ui/runs/new", 403),
    ("rei", "/ui/review", 200), ("rei", "/ui/settings", 403), ("ada", "/ui/settings", 200), ("ada", "/ui/runs/new", 200),
])
def test_roles(offloop_client, user, path, status):
    sign_in(offloop_client, user)
    assert offloop_client.get(path, follow_redirects=False).status_code == status


def test_every_post_needs_the_csrf_token(client):
    c = client
    good = csrf_of(c.get("/ui/settings").text)
    for path, data in [("/ui/settings/keys", {"name": "no-token"}), ("/ui/settings/users", {"name": "x", "password": "y" * 12}),
                       ("/ui/review/1/approve", {"version": "1"}), ("/ui/models/pull", {"name": "smollm2-135m"}),
                       ("/ui/logout", {}), ("/ui/login", {"name": "ada", "password": PASSWORDS["ada"]})]:
        assert c.post(path, data=data).status_code == 403, path
        assert c.post(path, data={**data, "csrf_token": "forged"}).status_code == 403, path
    r = c.post("/ui/settings/keys", data={"name": "with-token", "csrf_token": good})
    assert r.status_code == 200 and "kg-" in r.text


def test_no_open_redirect_after_sign_in(offloop_client):
    c = offloop_client
    for target in ("https://evil.example/", "//evil.example/ui", "/v1/models", "/ui\\..\\x"):
        c.cookies.clear()
        token = csrf_of(c.get("/ui/login").text)
        r = c.post("/ui/login", data={"csrf_token": token, "name": "ada", "password": PASSWORDS["ada"], "next": target},
                   follow_redirects=False)
        assert r.headers["location"] == "/ui/", target


def test_admin_actions_are_audited(client, ui_home):
    from kogata.ops.audit import AuditLog

    token = csrf_of(client.get("/ui/settings").text)
    client.post("/ui/settings/keys", data={"name": "audited-key", "csrf_token": token})
    client.post("/ui/settings/users", data={"name": "newbie", "password": "a long password", "role": "viewer", "csrf_token": token})
    client.post("/ui/settings/users/newbie/remove", data={"csrf_token": token})
    log = AuditLog.open(ui_home)
    rows = [e.record for e in log.iter_rows() if (e.record.endpoint or "").startswith("ui.")]
    log.close()
    seen = {(r.endpoint, (r.input or {}).get("key") or (r.input or {}).get("user")) for r in rows}
    assert {("ui.keys.create", "audited-key"), ("ui.users.add", "newbie"), ("ui.users.remove", "newbie")} <= seen
    assert all(r.key_name == "ui:local" for r in rows if r.endpoint.startswith("ui.users"))


def test_bad_settings_input_gets_a_one_line_error_naming_the_field(client):
    token = csrf_of(client.get("/ui/settings").text)
    r = client.post("/ui/settings/keys", data={"name": "rate", "rpm": "fast", "csrf_token": token})
    assert r.status_code == 400 and "rpm must be a whole number" in r.text
    r = client.post("/ui/settings/users", data={"name": "shorty", "password": "short", "role": "viewer", "csrf_token": token})
    assert r.status_code == 400 and "use at least 10 characters" in r.text
    r = client.post("/ui/settings/users", data={"name": "../etc", "password": "long enough pw", "role": "viewer", "csrf_token": token})
    assert r.status_code == 400 and "user name" in r.text


def test_page_security_headers(client):
    r = client.get("/ui/")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'self'" in csp and "unsafe-eval" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
