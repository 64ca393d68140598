"""OpenAI request and response bodies as pydantic models.

Requests are strict about types (``"max_tokens": "5"`` is a 400, as at OpenAI) and reject unknown fields
(OpenAI answers ``Unrecognized request argument supplied``); a few OpenAI fields that kogata accepts but that
change nothing at their neutral value (``user``, ``presence_penalty: 0`` …) are listed so that ordinary clients
pass. Response models document the shapes in ``/openapi.json``; the routes build the same shapes as dicts (no
per-token validation cost on the streaming path).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

MAX_STOP = 16  # stop strings per request (OpenAI allows 4; every extra one costs a scan per token)
MAX_STOP_CHARS = 256


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


Number = StrictFloat | StrictInt


# ---- shared pieces -------------------------------------------------------------------------------
class TextPart(_Strict):
    type: Literal["text"]
    text: StrictStr


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: StrictStr | list[TextPart] | None = None
    name: StrictStr | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class JSONSchemaSpec(_Strict):
    name: StrictStr = Field(min_length=1, max_length=64)
    description: StrictStr | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: StrictBool | None = None

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaSpec | None = None


class StreamOptions(_Strict):
    include_usage: StrictBool = False


class _Sampling(_Strict):
    """Fields shared by chat and text completions."""

    model: StrictStr = Field(min_length=1, max_length=256)
    max_tokens: StrictInt | None = Field(default=None, ge=1)
    temperature: Number | None = Field(default=None, ge=0, le=2)
    top_p: Number | None = Field(default=None, gt=0, le=1)
    n: StrictInt | None = Field(default=None, ge=1, le=1)
    stop: StrictStr | list[StrictStr] | None = None
    seed: StrictInt | None = None
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    presence_penalty: Number | None = Field(default=None, ge=0, le=0)
    frequency_penalty: Number | None = Field(default=None, ge=0, le=0)
    user: StrictStr | None = Field(default=None, max_length=256)

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class RetrievalOptions(_Strict):
    """kogata extension: answer from a document index (``kogata index build``), citing passages as [n]."""

    index: StrictStr = Field(min_length=1, max_length=64, description="Index name (see `kogata index list`).")
    k: StrictInt = Field(default=4, ge=1, le=20, description="Passages offered to the model.")
    mode: Literal["hybrid", "bm25", "dense"] | None = Field(default=None, description="Default: hybrid (bm25 without an embedder).")


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    retrieval: RetrievalOptions | None = None
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1)
    logprobs: StrictBool | None = False
    top_logprobs: StrictInt | None = Field(default=None, ge=0, le=20)
    response_format: ResponseFormat | None = None


class CompletionRequest(_Sampling):
    prompt: StrictStr | list[StrictStr] = Field(min_length=1)
    logprobs: StrictInt | None = Field(default=None, ge=0, le=5)
    echo: StrictBool | None = Field(default=False)
    suffix: StrictStr | None = None
    response_format: ResponseFormat | None = None  # llama.cpp-style extension: grammar-constrained JSON


class EmbeddingRequest(_Strict):
    model: StrictStr = Field(min_length=1, max_length=256)
    input: StrictStr | list[StrictStr] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] | None = "float"
    dimensions: StrictInt | None = Field(default=None, ge=1)
    user: StrictStr | None = Field(default=None, max_length=256)


class AliasUpdate(_Strict):
    artifact: StrictStr = Field(min_length=1, max_length=256)
    reason: StrictStr | None = Field(default=None, max_length=1000)


# ---- responses (documentation of the shapes the routes return) -----------------------------------
class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class UsageOut(_Out):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int


class ChatMessageOut(_Out):
    role: Literal["assistant"]
    content: str | None


class ChatChoice(_Out):
    index: int
    message: ChatMessageOut
    finish_reason: str | None
    logprobs: dict[str, Any] | None = None


class ChatCompletion(_Out):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: UsageOut
    system_fingerprint: str | None = None


class CompletionChoice(_Out):
    index: int
    text: str
    finish_reason: str | None
    logprobs: dict[str, Any] | None = None


class Completion(_Out):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: UsageOut
    system_fingerprint: str | None = None


class EmbeddingItem(_Out):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str


class EmbeddingList(_Out):
    object: Literal["list"]
    data: list[EmbeddingItem]
    model: str
    usage: UsageOut


class ModelCard(_Out):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    artifact_id: str
    artifact_name: str
    kind: str


class ModelList(_Out):
    object: Literal["list"]
    data: list[ModelCard]


class ErrorDetail(_Out):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(_Out):
    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": desc}
    for code, desc in ((400, "invalid request"), (401, "missing or wrong API key"), (403, "model not allowed for this key"),
                       (404, "unknown model"), (413, "body too large"), (429, "quota or queue full"),
                       (503, "still loading"))
}
