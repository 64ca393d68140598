"""Structured pruning: depth (block influence) and width (activation importance, GQA-aware)."""

import kogata.methods.prune.method  # noqa: F401  (registers prune-depth, prune-width)
