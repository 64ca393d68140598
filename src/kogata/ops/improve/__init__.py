"""The improvement loop: reviewed corrections → LoRA → gated alias ``candidate`` (see :mod:`.pipeline`)."""

from kogata.ops.improve.pipeline import ImproveConfig, improve

__all__ = ["ImproveConfig", "improve"]
