"""Marker files inside an artifact folder that change how it is loaded (shared by methods and runtimes)."""

from __future__ import annotations

QUANT_MARKER = "kogata_quantization.json"  # written by `quantize type=int8-dynamic`; the torch runtime honours it
ADAPTER_META = "kogata_adapter.json"  # a LoRA adapter artifact's base model and peft settings
ADAPTER_KIND = "lora-adapter"  # artifact kind of a LoRA adapter
EMBEDDER_KIND = "embedder"  # artifact kind of a sentence-embedding model
