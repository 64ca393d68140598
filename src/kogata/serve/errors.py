"""API errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}`` with a 4xx for every client
mistake. Routes raise :class:`APIError`; the app's exception handlers turn it (and FastAPI's own validation
errors) into a JSON response — never a traceback."""

from __future__ import annotations

from typing import Any

# status -> OpenAI error type
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
    504: "timeout_error",
}


class APIError(Exception):
    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None, type: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}
        self.type = type or _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def bad_request(message: str, *, param: str | None = None, code: str | None = "invalid_request") -> APIError:
    return APIError(400, message, param=param, code=code)


def rate_limited(message: str, retry_after_s: float, *, code: str = "rate_limit_exceeded") -> APIError:
    return APIError(429, message, code=code, headers={"Retry-After": str(max(1, int(retry_after_s + 0.999)))})
