"""``/metrics``: Prometheus text format from the app's own registry."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from kogata.serve.metrics import CONTENT_TYPE
from kogata.serve.state import ServeState, get_state

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
def metrics(state: ServeState = Depends(get_state)) -> Response:
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)
