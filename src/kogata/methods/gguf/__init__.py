"""GGUF family: the HF→GGUF writer (`writer`, `vocab`) and the ``export-gguf`` method."""

import kogata.methods.gguf.export  # noqa: F401  (registers export-gguf)
