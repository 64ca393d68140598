"""The serving engine's user-facing errors (the server maps them to HTTP statuses). They pickle with their fields
(``__reduce__``), so an error raised in a Ray Serve replica reaches the gateway as itself."""

from __future__ import annotations

from kogata.core.errors import KogataError


class EngineBusy(KogataError):
    """The bounded waiting queue is full, or a request waited longer than its queue timeout (HTTP 429)."""

    def __init__(self, message: str, hint: str | None = None, *, retry_after_s: float = 1.0):
        super().__init__(message, hint)
        self.retry_after_s = retry_after_s

    def __reduce__(self):
        return _rebuild_busy, (self.message, self.hint, self.retry_after_s)


class ContextOverflow(KogataError):
    """``prompt tokens + max_tokens`` does not fit in one sequence's context (HTTP 400); the message names the limit."""

    def __init__(self, prompt_tokens: int, max_tokens: int, n_ctx: int):
        super().__init__(
            f"this model's context is {n_ctx} tokens per request, but the prompt has {prompt_tokens} tokens "
            f"and max_tokens is {max_tokens} ({prompt_tokens + max_tokens} in all)",
            "shorten the prompt or lower max_tokens",
        )
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.n_ctx = n_ctx

    def __reduce__(self):
        return ContextOverflow, (self.prompt_tokens, self.max_tokens, self.n_ctx)


class EngineClosed(KogataError):
    """The engine was closed (or is not started) and accepts no new requests (HTTP 503)."""


def _rebuild_busy(message: str, hint: str | None, retry_after_s: float) -> EngineBusy:
    return EngineBusy(message, hint, retry_after_s=retry_after_s)
