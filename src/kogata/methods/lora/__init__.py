"""LoRA fine-tuning via peft (``lora``), merging (``merge``) and GGUF adapter export (``export-lora-gguf``)."""

import kogata.methods.lora.gguf_adapter  # noqa: F401  (registers export-lora-gguf)
import kogata.methods.lora.method  # noqa: F401  (registers lora, merge)
