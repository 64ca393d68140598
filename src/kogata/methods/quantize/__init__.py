"""Quantization: GGUF types through llama.cpp, int8-dynamic for torch (``quantize``)."""

import kogata.methods.quantize.method  # noqa: F401  (registers quantize)
