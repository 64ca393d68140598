"""``POST /v1/search`` (document search; issue 17). Empty until the search package lands."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["search"])
