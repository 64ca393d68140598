"""User-facing errors: one line naming what was wrong and how to fix it; the CLI exits with code 2."""

from __future__ import annotations


class KogataError(Exception):
    """An error caused by the user's input or environment (not a bug in kogata).

    The CLI prints ``error: <message> — <hint>`` on one line and exits with ``exit_code``.
    """

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message

    def __reduce__(self):  # pickles with its hint (Ray tasks and replicas hand errors back this way)
        return type(self), (self.message, self.hint)
