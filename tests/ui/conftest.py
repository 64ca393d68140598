"""Fixtures of the web UI tests: a store with the tiny models, an in-process app (FastAPI's TestClient), live
servers (``create_app`` + uvicorn in a thread on 127.0.0.1, one loopback-only, one configured off loopback so
that sign-in is required), and Debian's chromium driven by Playwright. Every wait is bounded; a missing chromium
fails the browser tests (it never skips them)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).parent
AXE = HERE / "vendor" / "axe.min.js"
HOST_RULES = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"
START_TIMEOUT_S = 60
PASSWORDS = {"ada": "ada-admin-pass-1", "rei": "rei-reviewer-pass", "vic": "vic-viewer-pass-1"}
ROLES = {"ada": "admin", "rei": "reviewer", "vic": "viewer"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed_review(home: Path) -> list[int]:
    """Two open review items: a flagged answer (a phone number the PII check found) and a sampled one."""
    from kogata.ops.review import ReviewQueue

    queue = ReviewQueue.open(home)
    answer = "お電話は 03-1234-5678 までどうぞ。"
    flagged = queue.add(source="flag", prompt=[{"role": "user", "content": "電話番号を教えてください"}], original=answer,
                        model_alias="prod", details={"action": "flag", "verdicts": {"output": {"where": "output", "action": "flag", "checks": [
                            {"check": "pii", "action": "flag", "fired": True, "hits": [{"start": 5, "end": 17, "type": "phone"}]}]}}})
    sampled = queue.add(source="sample", prompt=[{"role": "user", "content": "返品できますか"}], original="はい、30日以内なら返品できます。",
                        model_alias="prod", details={"action": "allow"})
    queue.audit.close()
    return [flagged.id, sampled.id]


@pytest.fixture(scope="session")
def ui_home(tmp_path_factory, tiny_llama_gguf, tiny_llama_dir) -> Path:
    """A store: ``tiny`` (GGUF, served as ``prod``), ``tiny-hf`` (the float model the wizard starts from), users
    ada/rei/vic (admin/reviewer/viewer), an API key (needed to configure a server off loopback), a tiny suite under
    ``suites/`` for the wizard, and two review items."""
    from kogata.artifacts.importer import import_path
    from kogata.artifacts.store import Store
    from kogata.serve.gateway.auth import KeyStore
    from kogata.serve.ui.users import UserStore
    from tests.unit.test_cli_eval import write_suite

    home = tmp_path_factory.mktemp("ui-home")
    store = Store(home)
    import_path(store, str(tiny_llama_gguf), name="tiny", log=lambda m: None)
    import_path(store, str(tiny_llama_dir), name="tiny-hf", log=lambda m: None)
    users = UserStore(store.engine)
    for name, role in ROLES.items():
        users.add(name, PASSWORDS[name], role)
    KeyStore(store.engine).create("ops")
    write_suite(home / "suites" / "tiny-desk", kpis="kpis: {max: {peak_rss_mb: 100000}}")
    seed_review(home)
    return home


def make_app(home: Path, **overrides):
    from kogata.artifacts.store import Store
    from kogata.serve.app import create_app
    from kogata.serve.config import build_config

    cfg = build_config(artifacts=["tiny"], aliases=["prod"], overrides={"ctx": 256, "parallel": 2, "threads": 1, "max_tokens_default": 64, **overrides})
    return create_app(cfg, store=Store(home))


def wait_healthy(get, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if get("/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"the server was not healthy after {timeout_s} s"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def client(ui_home):
    """The app in process on a loopback config: the TestClient is the implicit local admin."""
    from fastapi.testclient import TestClient

    with TestClient(make_app(ui_home)) as c:
        wait_healthy(c.get)
        yield c


@pytest.fixture(scope="module")
def offloop_client(ui_home):
    """The app configured for 0.0.0.0 (never bound: TestClient calls it in process): sign-in is required."""
    from fastapi.testclient import TestClient

    with TestClient(make_app(ui_home, host="0.0.0.0")) as c:
        wait_healthy(c.get)
        yield c


class LiveServer:
    """``create_app`` under uvicorn in a thread, always bound to 127.0.0.1 (``host`` only configures the app)."""

    def __init__(self, home: Path, app=None, **overrides):
        import uvicorn

        self.port = free_port()
        self.app = app if app is not None else make_app(home, **overrides)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on", access_log=False))
        self.thread = threading.Thread(target=self.server.run, name=f"ui-server-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        self.thread.start()
        wait_healthy(lambda p: httpx.get(self.url + p, timeout=2))
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="session")
def live(ui_home):
    srv = LiveServer(ui_home).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def live_offloop(ui_home):
    srv = LiveServer(ui_home, host="0.0.0.0").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is not installed: the browser tests need Debian's chromium "
                    "(apt-get install chromium chromium-driver fonts-ipafont-gothic; `make test`'s setup installs it)")
    return path


@pytest.fixture(scope="module")  # not session: a live sync_playwright keeps an event loop running for later tests
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, args=[HOST_RULES], timeout=30_000)
        yield b
        b.close()


@pytest.fixture()
def page_factory(browser):
    """New pages in fresh contexts (own cookies), Japanese by default; closed after the test."""
    contexts = []

    def make(lang: str = "ja"):
        ctx = browser.new_context(locale="ja-JP" if lang == "ja" else "en-US", viewport={"width": 1280, "height": 900},
                                  extra_http_headers={"Accept-Language": "ja-JP,ja;q=0.9" if lang == "ja" else "en-US,en;q=0.9"})
        ctx.set_default_timeout(15_000)
        contexts.append(ctx)
        page = ctx.new_page()
        page.console_errors = []  # type: ignore[attr-defined]
        page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
        page.on("pageerror", lambda e: page.console_errors.append(str(e)))
        return page

    yield make
    for ctx in contexts:
        ctx.close()


@pytest.fixture(scope="session")
def shots_dir(tmp_path_factory) -> Path:
    """Screenshots of every page: ``$KOGATA_UI_SHOTS`` or a folder under pytest's temporary directory."""
    folder = Path(os.environ.get("KOGATA_UI_SHOTS") or tmp_path_factory.mktemp("ui-screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def login(page, base: str, name: str) -> None:
    page.goto(f"{base}/ui/login")
    page.fill("#login-name", name)
    page.fill("#login-password", PASSWORDS[name])
    page.click("button[type=submit].primary")
    page.wait_for_url(f"{base}/ui/")


# ---- a second store for the playground and monitoring pages: two served models, a document index, traffic -------
REFERENCE_JA = [f"{item}について教えてください。{detail}" for item in
                ("返品", "配送", "保証", "支払い", "ポイント", "会員登録", "領収書", "交換", "修理", "在庫")
                for detail in ("期限はありますか。", "手数料はかかりますか。", "どこで確認できますか。", "電話でも受け付けていますか。")]
TRAFFIC_EN = [f"Can you tell me about {item}? {detail}" for item in
              ("returns", "shipping", "warranty", "payment", "points", "sign-up", "receipts", "exchanges", "repairs", "stock")
              for detail in ("Is there a deadline?", "Is there a fee?", "Where can I check it?", "Can I call instead?")]
HANDBOOK = {
    "returns.md": "# 返品について\n\n商品到着から30日以内であれば返品できます。返品の送料は当社が負担します。\n",
    "shipping.md": "# 配送について\n\nご注文から3〜5営業日でお届けします。離島は追加で2日かかります。\n",
}


def seed_traffic(home: Path, alias: str, questions: list[str], *, latency_ms: float = 120.0) -> None:
    """Answered chat requests to ``alias`` in the audit log, as the server writes them (oldest first, just now)."""
    from kogata.ops.audit import AuditLog, AuditRecord

    log = AuditLog.open(home)
    for i, q in enumerate(questions):
        log.append(AuditRecord(request_id=f"seed-{alias}-{i}", key_name="seed", model_alias=alias, endpoint="chat.completions",
                               status="ok", action="allow", latency_ms=latency_ms, tokens_in=12, tokens_out=8,
                               input=[{"role": "user", "content": q}], output="はい。", meta={"finish_reason": "stop"}))
    log.close()


@pytest.fixture(scope="session")
def gaps_home(tmp_path_factory, tiny_long_gguf, tiny_gemma3_gguf) -> Path:
    """A store serving two models (``tiny`` as ``prod``, ``tiny-gemma`` as ``candidate``), a BM25 document index
    ``handbook``, Japanese reference questions for the monitor, and an hour of traffic: English questions to
    ``prod`` (a language shift the monitor must flag) and reference-like Japanese ones to ``candidate``."""
    import json

    import yaml

    from kogata.artifacts.importer import import_path
    from kogata.artifacts.store import Store
    from kogata.search.index import build_index

    home = tmp_path_factory.mktemp("ui-gaps-home")
    store = Store(home)
    import_path(store, str(tiny_long_gguf), name="tiny", log=lambda m: None)
    import_path(store, str(tiny_gemma3_gguf), name="tiny-gemma", log=lambda m: None)
    docs = home / "handbook"
    docs.mkdir()
    for name, text in HANDBOOK.items():
        (docs / name).write_text(text, encoding="utf-8")
    build_index(store, [docs], "handbook", embedder="none", tokenizer="bigram")
    (home / "reference.jsonl").write_text("\n".join(json.dumps({"question": q}, ensure_ascii=False) for q in REFERENCE_JA),
                                          encoding="utf-8")
    seed_traffic(home, "prod", TRAFFIC_EN)
    seed_traffic(home, "candidate", REFERENCE_JA)
    (home / "serve.yaml").write_text(yaml.safe_dump({
        "models": [{"artifact": "tiny", "aliases": ["prod"]}, {"artifact": "tiny-gemma", "aliases": ["candidate"]}],
        "monitor": {"reference": [str(home / "reference.jsonl")], "window": "1h", "every_s": 5, "min_window": 10},
    }), encoding="utf-8")
    return home


def make_gaps_app(home: Path, **overrides):
    from kogata.artifacts.store import Store
    from kogata.serve.app import create_app
    from kogata.serve.config import build_config

    cfg = build_config(config_file=home / "serve.yaml",
                       overrides={"ctx": 4096, "parallel": 2, "threads": 1, "max_tokens_default": 32, **overrides})
    return create_app(cfg, store=Store(home))


@pytest.fixture(scope="module")
def gaps_client(gaps_home):
    from fastapi.testclient import TestClient

    with TestClient(make_gaps_app(gaps_home, max_body_bytes=32 << 20)) as c:
        wait_healthy(c.get)
        yield c


@pytest.fixture(scope="module")
def live_gaps(gaps_home):
    """The two-model server live on 127.0.0.1, with room for wizard uploads above the default body limit."""
    srv = LiveServer(gaps_home, app=make_gaps_app(gaps_home, max_body_bytes=32 << 20)).start()
    yield srv
    srv.stop()
