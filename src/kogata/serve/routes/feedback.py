"""``POST /v1/feedback`` (a user's rating of a response goes to the review queue) and ``GET /v1/held/{id}``
(the reviewed answer of a response the guard policy held).

Both use the server's :class:`~kogata.serve.guarding.Oversight` (``state.oversight``): the audit log finds the
response, the review queue holds the item. Without an audit log (``audit: false``) they answer 503.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from kogata.core.errors import KogataError
from kogata.serve import openai_io as io
from kogata.serve.errors import APIError
from kogata.serve.gateway.auth import Principal
from kogata.serve.schemas import ERROR_RESPONSES
from kogata.serve.state import ServeState, authenticate, get_state

router = APIRouter(prefix="/v1", tags=["review"])


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    response_id: str = Field(min_length=1, max_length=64, description="The `id` of the response being rated.")
    rating: int = Field(ge=-1, le=1, description="-1 bad, 0 neutral, 1 good.")
    comment: str | None = Field(default=None, max_length=4000, description="What was wrong, or what the right answer is.")


def _oversight(state: ServeState, what: str) -> Any:
    ov = state.oversight
    if ov is None or ov.review is None:
        raise APIError(503, f"{what} is not available on this server (it runs without an audit log)", code="review_disabled")
    return ov


@router.post("/feedback", responses=ERROR_RESPONSES)
async def post_feedback(body: Feedback, state: ServeState = Depends(get_state), who: Principal = Depends(authenticate)) -> Any:
    """Record the rating (and comment) with the response's review item; a new item when it has none."""
    ov = _oversight(state, "feedback")
    from kogata.ops.review import ReviewConflict, UnknownResponse

    try:
        item = await run_in_threadpool(ov.review.record_feedback, body.response_id, body.rating, body.comment)
    except UnknownResponse as exc:
        raise APIError(404, str(exc), code="unknown_response", param="response_id") from None
    except ReviewConflict as exc:
        raise APIError(409, str(exc), code="conflict") from None
    except KogataError as exc:
        raise APIError(400, str(exc), code="bad_feedback") from None
    return {"object": "feedback", "response_id": body.response_id, "review_item": item.id, "state": item.state}


@router.get("/held/{response_id}", responses={**ERROR_RESPONSES, 202: {"description": "still waiting for a reviewer"}})
async def poll_held(response_id: str, state: ServeState = Depends(get_state), who: Principal = Depends(authenticate)) -> Any:
    """The held answer once a reviewer approved or corrected it (given exactly once), ``202`` while it waits, the
    policy's safe reply when it was rejected."""
    ov = _oversight(state, "held answers")
    return await run_in_threadpool(_poll, ov, response_id, who)


def _poll(ov: Any, response_id: str, who: Principal) -> JSONResponse:
    from kogata.ops.review import ReviewConflict

    unknown = APIError(404, f"no held answer with id {response_id!r}", code="unknown_response", param="response_id")
    item = ov.review.find(response_id, source="hold")
    entry = ov.audit.find(row_id=item.audit_id) if item is not None and item.audit_id else None  # the exchange's own row
    if entry is None or (entry.record.key_name != who.name and not who.admin):
        raise unknown  # another key's answer is as unknown as a missing one
    rec = entry.record
    usage = {"prompt_tokens": rec.tokens_in or 0, "completion_tokens": rec.tokens_out or 0}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    alias, art = rec.model_alias or "", rec.artifact_id or ""
    if item.state == "open":
        return JSONResponse(io.held_response(response_id, alias, art, rec.endpoint or "", item.id, usage), status_code=202,
                            headers={"Retry-After": "5"})
    if item.state == "rejected":
        text, finish = _safe_reply(ov, rec), "content_filter"
    else:
        try:
            text, finish = ov.review.release(item.id), "stop"
        except ReviewConflict as exc:
            raise APIError(409, str(exc), code="already_released") from None
    if rec.endpoint == "completions":
        body = io.text_completion(response_id, alias, art, text, finish, usage, None)
    else:
        body = io.chat_completion(response_id, alias, art, text, finish, usage, None)
    body["kogata"] = {"status": item.state, "review_item": item.id}
    return JSONResponse(body)


def _safe_reply(ov: Any, rec: Any) -> str:
    replies = ov.policy.safe_reply if ov.policy is not None else {}
    lang = next((v.get("lang") for v in (rec.verdicts or {}).values() if isinstance(v, dict) and v.get("lang")), "en")
    return replies.get(lang) or next(iter(replies.values()), "")
