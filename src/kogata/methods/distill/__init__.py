"""Knowledge distillation from a teacher artifact into a (pruned) student (``distill``)."""

import kogata.methods.distill.method  # noqa: F401  (registers distill)
