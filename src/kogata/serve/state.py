"""What the routes share (``request.app.state.kogata``) and the authentication dependency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request

from kogata.serve.config import ServeConfig, is_loopback
from kogata.serve.errors import APIError
from kogata.serve.gateway.auth import ANONYMOUS, KeyStore, Principal, bearer_token
from kogata.serve.gateway.quotas import Quotas, UsageCounter
from kogata.serve.metrics import ServeMetrics
from kogata.serve.models import ModelSet
from kogata.serve.pipeline import RequestPipeline


@dataclass
class ServeState:
    config: ServeConfig
    models: ModelSet
    keys: KeyStore | None
    quotas: Quotas
    usage: UsageCounter
    metrics: ServeMetrics
    pipeline: RequestPipeline
    store: Any = None
    oversight: Any = None  # kogata.serve.guarding.Oversight: the guard policy, audit log and review queue
    drift: Any = None  # the last kogata.ops.drift.DriftReport of the monitor loop (serve.yaml `monitor:`)
    traffic: Any = None  # kogata.serve.traffic.TrafficSplit: shadow and canary (serve.yaml `shadow:` / `canary:`)


def get_state(request: Request) -> ServeState:
    return request.app.state.kogata


def authenticate(request: Request) -> Principal:
    """The calling key. Keys required: a missing, wrong or revoked key is a 401. Keys not required (loopback):
    anonymous, unless a valid key is sent (then its usage is counted under its name)."""
    state: ServeState = request.app.state.kogata
    token = bearer_token(request.headers.get("authorization"), request.headers.get("x-api-key"))
    who = None
    if token is not None and state.keys is not None:
        who = state.keys.verify(token)
    if who is not None:
        request.state.key_name = who.name
        return who
    if state.config.keys_required:
        if token is None:
            raise APIError(401, "an API key is required: send 'Authorization: Bearer kg-...'", code="missing_api_key")
        raise APIError(401, "the API key is not valid (wrong or revoked)", code="invalid_api_key")
    return ANONYMOUS


def require_admin(request: Request, who: Principal) -> None:
    state: ServeState = request.app.state.kogata
    if who.admin:
        return
    if not state.config.keys_required and who.anonymous:
        client = request.client.host if request.client else ""
        if is_loopback(client):
            return  # keys off: only a client on this machine may administer
    raise APIError(403, "this needs an admin key (`kogata serve keys create NAME --admin`)", code="admin_required")


def check_model_allowed(who: Principal, alias: str, model: Any) -> None:
    if not who.may_use(alias, model.artifact.name, model.artifact.id):
        raise APIError(403, f"key {who.name!r} may not use model {alias!r}", code="model_not_allowed", param="model")
