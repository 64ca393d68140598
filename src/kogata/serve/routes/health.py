"""``/health`` (200 when every model is loaded, 503 while loading or after a load failure) and ``/ready``."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from kogata.serve.state import ServeState, get_state

router = APIRouter(tags=["health"])


def _status(state: ServeState) -> tuple[int, dict]:
    models = state.models
    if models.error is not None:
        return 503, {"status": "error", "error": models.error}
    if not models.ready():
        return 503, {"status": "loading"}
    stats = {alias: m.backend.stats() for alias, m in models.routes().items()}
    return 200, {"status": "ok", "models": {a: {"artifact_id": m.id, **stats[a]} for a, m in models.routes().items()}}


@router.get("/health")
def health(state: ServeState = Depends(get_state)) -> JSONResponse:
    code, body = _status(state)
    return JSONResponse(body, status_code=code, headers={"Retry-After": "1"} if code == 503 else None)


@router.get("/ready")
def ready(state: ServeState = Depends(get_state)) -> JSONResponse:
    code, body = _status(state)
    return JSONResponse({"ready": code == 200, "status": body["status"]}, status_code=code)
