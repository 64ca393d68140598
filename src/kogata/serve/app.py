"""``create_app(config) -> FastAPI``: the whole service in one app.

Layers of one request: :class:`ArtifactHeader` (adds ``x-kogata-artifact`` to every response, counts requests by
route and status) → :class:`~kogata.serve.gateway.limits.BodyLimits` (413 / invalid UTF-8) → FastAPI routing,
body validation (400 in OpenAI's error shape) → the route (auth, quota, model lease, engine).

Models load in a background thread after the server starts listening: ``/health`` answers 503 until they are
warm. At shutdown (uvicorn's graceful SIGTERM: stop accepting, finish in-flight requests) the usage counters are
flushed and the engines drained and closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kogata import __version__
from kogata.core.errors import KogataError
from kogata.ops.aliases import record_alias
from kogata.serve import ui
from kogata.serve.config import ServeConfig
from kogata.serve.errors import APIError, error_body
from kogata.serve.gateway.auth import KeyStore
from kogata.serve.gateway.limits import BodyLimits
from kogata.serve.gateway.quotas import Quotas, UsageCounter
from kogata.serve.guarding import Oversight
from kogata.serve.metrics import ServeMetrics
from kogata.serve.models import EngineFactory, ModelSet
from kogata.serve.pipeline import RequestPipeline
from kogata.serve.routes import admin, feedback, health, metrics, openai, search
from kogata.serve.state import ServeState
from kogata.serve.traffic import TrafficSplit

log = logging.getLogger("kogata.serve")
ARTIFACT_HEADER = b"x-kogata-artifact"


class ArtifactHeader:
    """Pure ASGI middleware: ``x-kogata-artifact`` on every response (the artifact that served the request, or
    every served artifact's id for requests not tied to one model) and the ``kogata:http_requests`` counter."""

    def __init__(self, app: Any, state_ref: Callable[[], ServeState]):
        self.app = app
        self.state_ref = state_ref

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]

        async def send_with_header(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                st = scope.get("state") or {}
                art = st.get("artifact_id") or ",".join(self.state_ref().models.artifact_ids())
                headers = list(message.get("headers") or [])
                headers.append((ARTIFACT_HEADER, art.encode("latin-1", "replace")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_header)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            key = (scope.get("state") or {}).get("key_name") or "-"
            self.state_ref().metrics.observe_http(path, status[0], key)


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _is_union_tag(part: object) -> bool:
    """pydantic names the union member in an error's location (``prompt.str``); the client's parameter is ``prompt``."""
    if not isinstance(part, str):
        return False
    return part.lower() in _TYPE_TAGS or "[" in part or part[:1].isupper() or part.startswith(("function-", "literal"))


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None, str]:
    errors = exc.errors()
    if not errors:
        return "invalid request body", None, "invalid_request"
    err = errors[0]
    loc = [str(p) for p in err.get("loc", ()) if p != "body" and not _is_union_tag(p)]
    param = ".".join(loc) or None
    kind = err.get("type", "")
    if kind == "json_invalid":
        return f"request body is not valid JSON ({err.get('ctx', {}).get('error', err.get('msg'))})", None, "invalid_json"
    if kind == "extra_forbidden":
        return f"Unrecognized request argument supplied: {param}", param, "unknown_parameter"
    if kind == "missing":
        return f"missing required parameter: {param}", param, "missing_parameter"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{param or 'body'}: {err.get('msg')}{more}", param, "invalid_value"


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param, code = _validation_message(exc)
        return JSONResponse(error_body(message, "invalid_request_error", param, code), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        message = str(exc.detail) if exc.detail else "error"
        if exc.status_code == 400 and "parsing the body" in message:
            message, kind = "request body could not be parsed as JSON", "invalid_request_error"
        return JSONResponse(error_body(message, kind, None, None), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s: %s", request.url.path, type(exc).__name__, exc_info=exc)
        return JSONResponse(error_body("internal server error (see the server log)", "api_error", None, "internal_error"),
                            status_code=500)


def build_state(config: ServeConfig, *, store: Any = None, engine_factory: EngineFactory | None = None,
                pipeline: RequestPipeline | None = None) -> ServeState:
    if store is None:
        from kogata.artifacts.store import Store

        store = Store()
    keys = KeyStore(store.engine)
    if config.keys_required and keys.active_count() == 0:
        raise KogataError(
            f"serving on {config.host} needs API keys, and the store has none",
            "create one with `kogata serve keys create NAME` (or serve on 127.0.0.1)",
        )

    def on_alias(alias: str, art_id: str, by: str | None, reason: str | None) -> None:
        record_alias(store.engine, alias, art_id, by=by, reason=reason)

    oversight = _oversight(config, store)
    if engine_factory is None and config.ray:
        from kogata.serve.ray_engine import init_ray, ray_engine_factory

        init_ray()  # on this (main) thread: the replicas are deployed later, from the loading thread
        engine_factory = ray_engine_factory
    models = ModelSet(config, store, engine_factory=engine_factory, on_alias_change=on_alias)
    _check_splits(config, models)
    return ServeState(config=config, models=models, keys=keys, quotas=Quotas(), usage=UsageCounter(store.engine),
                      metrics=ServeMetrics(models.stats), pipeline=pipeline or oversight.pipeline(), store=store,
                      oversight=oversight, traffic=TrafficSplit(config, models, store))


def _check_splits(config: ServeConfig, models: ModelSet) -> None:
    """Every alias a shadow or canary names must be served (else the experiment would silently do nothing)."""
    served = models.planned_aliases()
    named = [("shadow", a) for pair in config.shadow.items() for a in pair]
    named += [("canary", a) for alias, split in config.canary.items() for a in (alias, *split)]
    for key, alias in named:
        if alias not in served:
            raise KogataError(f"serve config: {key} names alias {alias!r}, which is not served here (served: {', '.join(sorted(served))})",
                              f"add a model with that alias, e.g. `- artifact: \"@{alias}\"` under models:")


def _oversight(config: ServeConfig, store: Any) -> Oversight:
    """The guard policy (validated now: a bad one stops the server before it binds), the audit log, the review queue."""
    policy = None
    if config.policy:
        from kogata.guard import Policy

        policy = Policy.load(config.policy)
        if not config.audit and any(c.action == "hold" for c in policy.checks):
            raise KogataError(f"{config.policy}: a check holds answers for review, which needs the audit log",
                              "serve with the audit log on (drop `audit: false` / --no-audit) or change the hold actions")
    return Oversight.open(store, policy=policy, audit=config.audit)


def create_app(config: ServeConfig, *, store: Any = None, engine_factory: EngineFactory | None = None,
               pipeline: RequestPipeline | None = None, state: ServeState | None = None,
               on_load_error: Callable[[BaseException], None] | None = None) -> FastAPI:
    """The app for ``config``. Artifacts are resolved now (unknown names fail here); they load when the app starts."""
    state = state or build_state(config, store=store, engine_factory=engine_factory, pipeline=pipeline)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        def load() -> None:
            try:
                state.models.start()
            except BaseException as exc:  # noqa: BLE001 - reported on /health and to the runner
                log.error("loading failed: %s", exc)
                if on_load_error is not None:
                    on_load_error(exc)

        loader = threading.Thread(target=load, name="kogata-load", daemon=True)
        loader.start()
        tasks = [asyncio.create_task(_flush_loop(state))]
        if state.models.followed and config.follow_aliases_s > 0:
            tasks.append(asyncio.create_task(_follow_loop(state)))
        if config.monitor is not None and state.oversight is not None and state.oversight.audit is not None:
            tasks.append(asyncio.create_task(_monitor_loop(state)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            loader.join(timeout=1)
            await asyncio.to_thread(_shutdown, state)

    app = FastAPI(title="kogata serve", version=__version__, lifespan=lifespan,
                  description="OpenAI-compatible API serving kogata artifacts. Every response names the served "
                              "artifact in the x-kogata-artifact header.")
    app.state.kogata = state
    _install_handlers(app)
    for r in (openai.router, feedback.router, search.router, admin.router, health.router, metrics.router):
        app.include_router(r)
    ui.install(app)
    app.add_middleware(BodyLimits, max_body_bytes=config.max_body_bytes, path_limits=ui.upload_path_limits())
    app.add_middleware(ArtifactHeader, state_ref=lambda: state)
    return app


async def _flush_loop(state: ServeState) -> None:
    while True:
        await asyncio.sleep(state.config.usage_flush_s)
        try:
            await asyncio.to_thread(state.usage.flush)
        except Exception as exc:  # noqa: BLE001 - counters are kept and retried
            log.warning("usage flush failed: %s", exc)


async def _follow_loop(state: ServeState) -> None:
    """Every ``follow_aliases_s``: "@NAME" models follow the store (``kogata models alias set|promote|rollback``)."""
    while True:
        await asyncio.sleep(state.config.follow_aliases_s)
        try:
            for swap in await asyncio.to_thread(state.models.follow_store):
                log.info("followed the store: %s now serves %s", swap["alias"], swap["artifact_id"])
        except Exception as exc:  # noqa: BLE001 - the old model keeps serving; retried next round
            log.warning("following the store's aliases failed: %s", exc)


async def _monitor_loop(state: ServeState) -> None:
    """Every ``monitor.every_s``: the drift signals of the last ``monitor.window`` of traffic → /metrics gauges."""
    from kogata.ops.audit.export import parse_since
    from kogata.ops.drift import Thresholds, check, reference_from_files, served

    mon = state.config.monitor
    reference = await asyncio.to_thread(reference_from_files, [Path(p) for p in mon.reference])
    while True:
        try:
            current = await asyncio.to_thread(served, state.oversight.audit, since_us=parse_since(mon.window))
            report = await asyncio.to_thread(check, current, reference, thresholds=Thresholds(min_window=mon.min_window))
            state.metrics.set_drift(report)
            state.drift = report
        except Exception as exc:  # noqa: BLE001 - monitoring must never take the server down
            log.warning("drift check failed: %s", exc)
        await asyncio.sleep(mon.every_s)


def _shutdown(state: ServeState) -> None:
    try:
        state.usage.flush()
    except Exception as exc:  # noqa: BLE001
        log.warning("usage flush at shutdown failed: %s", exc)
    state.models.close(drain=True)
    if state.oversight is not None:
        try:
            state.oversight.close()  # signs a last checkpoint over the rows written since the previous one
        except Exception as exc:  # noqa: BLE001
            log.warning("closing the audit log failed: %s", exc)
