"""``/admin``: point an alias at another artifact (hot swap) and read the alias history. Admin key only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from starlette.concurrency import run_in_threadpool

from kogata.core.errors import KogataError
from kogata.ops.aliases import alias_history
from kogata.serve.config import ALIAS_PATTERN
from kogata.serve.errors import APIError
from kogata.serve.gateway.auth import Principal
from kogata.serve.schemas import ERROR_RESPONSES, AliasUpdate
from kogata.serve.state import ServeState, authenticate, get_state, require_admin

router = APIRouter(prefix="/admin", tags=["admin"])


@router.post("/models/{alias}", responses=ERROR_RESPONSES)
async def point_alias(body: AliasUpdate, request: Request, alias: str = Path(pattern=ALIAS_PATTERN, max_length=128),
                      state: ServeState = Depends(get_state), who: Principal = Depends(authenticate)) -> dict[str, Any]:
    """Load ``artifact``, warm it, switch ``alias`` to it, then drain and close the old engine."""
    require_admin(request, who)
    try:
        return await run_in_threadpool(state.models.swap, alias, body.artifact, by=who.name, reason=body.reason)
    except KogataError as exc:
        raise APIError(404 if "no artifact" in exc.message else 400, str(exc), code="swap_failed", param="artifact") from None


@router.get("/models", responses=ERROR_RESPONSES)
def list_aliases(request: Request, state: ServeState = Depends(get_state), who: Principal = Depends(authenticate)) -> dict[str, Any]:
    require_admin(request, who)
    out = {}
    for alias, m in state.models.routes().items():
        out[alias] = {"artifact_id": m.id, "artifact_name": m.artifact.name, "kind": m.kind, "inflight": m.inflight(),
                      **m.backend.stats()}
    return {"models": out}


@router.get("/aliases/history", responses=ERROR_RESPONSES)
def history(request: Request, name: str | None = None, state: ServeState = Depends(get_state),
            who: Principal = Depends(authenticate)) -> dict[str, Any]:
    require_admin(request, who)
    if state.store is None:
        return {"history": []}
    return {"history": alias_history(state.store.engine, name)}
