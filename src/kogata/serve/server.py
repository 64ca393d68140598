"""Run the app under uvicorn: loopback by default, keys enforced off loopback, graceful SIGTERM.

uvicorn's own shutdown does what SIGTERM should: stop accepting connections, let in-flight requests finish
(at most ``drain_timeout_s``), then run the app's shutdown (usage flushed, engines drained and closed).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from kogata.serve.config import ServeConfig

log = logging.getLogger("kogata.serve")


def _configure_logging(level: str) -> None:
    logger = logging.getLogger("kogata.serve")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level.upper())


def run(config: ServeConfig, *, pipeline: Any = None, engine_factory: Any = None, announce: Any = None) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit code (1 when the models failed to load)."""
    import uvicorn

    import kogata.core.settings as settings
    from kogata.serve.app import create_app

    _configure_logging(config.log_level)
    if config.threads is not None:
        settings.set_threads(config.threads)
    failed: list[BaseException] = []
    server: uvicorn.Server | None = None

    def on_load_error(exc: BaseException) -> None:
        failed.append(exc)
        if server is not None:
            server.should_exit = True

    app = create_app(config, pipeline=pipeline, engine_factory=engine_factory, on_load_error=on_load_error)
    uv_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level=config.log_level if config.log_level != "info" else "warning",
        access_log=False,  # no request lines with paths/queries; metrics count requests instead
        timeout_graceful_shutdown=int(config.drain_timeout_s) or None,
        lifespan="on",
        server_header=False,
    )
    server = uvicorn.Server(uv_config)
    if announce is not None:
        announce()
    log.info("serving on http://%s:%s (keys %s)", config.host, config.port, "required" if config.keys_required else "optional")
    server.run()
    return 1 if failed else 0
