"""Which GGUF architectures kogata can use: those transformers can load into torch."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def gguf_supported_architectures() -> frozenset[str]:
    try:
        from transformers.integrations.ggml import GGUF_SUPPORTED_ARCHITECTURES

        return frozenset(GGUF_SUPPORTED_ARCHITECTURES)
    except ImportError:  # pragma: no cover - older/newer transformers layout
        return frozenset({"llama", "gemma3", "qwen2", "qwen3", "mistral", "phi3", "gemma2", "gemma"})
