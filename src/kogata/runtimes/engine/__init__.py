"""The serving engine: concurrent generation requests decoded together, behind one small contract.

``open_engine(artifact)`` returns an :class:`Engine`:

* a ``gguf`` artifact → :class:`~kogata.runtimes.engine.batched.BatchedLlamaEngine`: continuous batching on
  llama-cpp-python's low-level API, in process — up to ``parallel`` sequences advanced by one ``llama_decode``
  call per step, new requests joining between steps;
* an ``hf`` artifact → :class:`~kogata.runtimes.engine.serial.SerialEngine` over the torch runtime's
  ``stream()``, one request at a time, same interface.

``submit(request)`` is thread-safe and returns an :class:`EngineStream` at once (or raises
:class:`EngineBusy` / :class:`ContextOverflow` / :class:`EngineClosed`); iterate it (blocking or ``async for``)
to get :class:`~kogata.runtimes.base.StreamPiece` objects; the last one has ``finish_reason`` and exact
``usage``. ``kogata eval`` scores through the same engine with the ``llamacpp-engine`` runtime
(:mod:`kogata.runtimes.engine.runtime`), so the served build is the evaluated build.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from kogata.core.errors import KogataError
from kogata.runtimes.base import GenerateRequest
from kogata.runtimes.engine.errors import ContextOverflow, EngineBusy, EngineClosed
from kogata.runtimes.engine.stream import EngineStream


@runtime_checkable
class Engine(Protocol):
    artifact: Any  # kogata.artifacts.artifact.Artifact being served
    n_ctx: int  # context per sequence (prompt + max_tokens must fit)
    parallel: int  # sequences decoded together

    def start(self) -> None: ...

    def ready(self) -> bool: ...

    def submit(self, request: GenerateRequest, *, queue_timeout_s: float | None = None) -> EngineStream: ...

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]: ...

    def render_chat(self, messages: list[dict[str, str]]) -> str: ...

    def stats(self) -> dict[str, int]: ...

    def close(self, drain: bool = True) -> None: ...


def open_engine(artifact: Any, *, parallel: int = 4, ctx: int = 4096, threads: int | None = None,
                max_waiting: int = 64, **options: Any) -> Engine:
    """An engine for ``artifact`` (not started: call ``start()``). ``options`` go to the batched engine
    (``n_batch``, ``kv_type``, ``kv_unified``, ``flash_attn``) or, for hf artifacts, to the torch runtime."""
    fmt = getattr(artifact, "format", None)
    if getattr(artifact, "kind", "lm") == "embedder":
        raise KogataError(f"artifact {artifact.name} is a sentence embedder, not a language model",
                          "serve it through /v1/embeddings (the embedder runtime), not the generation engine")
    if fmt == "gguf":
        from kogata.runtimes.engine.batched import BatchedLlamaEngine

        return BatchedLlamaEngine(artifact, parallel=parallel, ctx=ctx, threads=threads, max_waiting=max_waiting, **options)
    if fmt == "hf":
        from kogata.core.settings import set_threads
        from kogata.runtimes.engine.serial import SerialEngine
        from kogata.runtimes.registry import open_runtime

        def factory() -> Any:
            if threads is not None:
                set_threads(threads)
            return open_runtime("torch", artifact, **options)

        return SerialEngine(artifact, factory, ctx=ctx, max_waiting=max_waiting)
    raise KogataError(f"cannot serve artifact format {fmt!r}", "serve a gguf file or an hf safetensors folder")


__all__ = ["ContextOverflow", "Engine", "EngineBusy", "EngineClosed", "EngineStream", "open_engine"]
