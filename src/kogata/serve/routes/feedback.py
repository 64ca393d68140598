"""``POST /v1/feedback``: a user's rating of a response goes to the review queue.

The queue is ``request.app.state.review`` (a :class:`kogata.ops.review.ReviewQueue` with an audit log, so the
response id can be found); without one the route answers 503. Include it behind the API-key dependency::

    app.state.review = ReviewQueue(audit.engine, audit=audit, sample_rate=policy.sample_rate)
    app.include_router(feedback.router, dependencies=[Depends(authenticate)])
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from kogata.core.errors import KogataError

router = APIRouter(tags=["feedback"])


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    response_id: str = Field(min_length=1, max_length=64, description="The `id` of the response being rated.")
    rating: int = Field(ge=-1, le=1, description="-1 bad, 0 neutral, 1 good.")
    comment: str | None = Field(default=None, max_length=4000, description="What was wrong, or what the right answer is.")


def _error(status: int, message: str, code: str) -> JSONResponse:
    kind = {404: "not_found_error", 409: "conflict_error", 503: "service_unavailable_error"}.get(status, "invalid_request_error")
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}}, status_code=status)


@router.post("/v1/feedback", status_code=200)
async def post_feedback(body: Feedback, request: Request) -> Any:
    """Record the rating (and comment) with the response's review item; a new item when it has none."""
    queue = getattr(request.app.state, "review", None)
    if queue is None:
        return _error(503, "feedback is not enabled on this server (no review queue)", "feedback_disabled")
    from kogata.ops.review import ReviewConflict, UnknownResponse

    try:
        item = await run_in_threadpool(queue.record_feedback, body.response_id, body.rating, body.comment)
    except UnknownResponse as exc:
        return _error(404, str(exc), "unknown_response")
    except ReviewConflict as exc:
        return _error(409, str(exc), "conflict")
    except KogataError as exc:
        return _error(400, str(exc), "bad_feedback")
    return {"object": "feedback", "response_id": body.response_id, "review_item": item.id, "state": item.state}
