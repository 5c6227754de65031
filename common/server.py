"""How every service is served: uvicorn on HOST:PORT (loopback unless told otherwise), with a clean SIGTERM."""

from __future__ import annotations

import logging

import uvicorn
from fastapi import FastAPI

from common.settings import env_int, env_str

log = logging.getLogger(__name__)


def shutdown_timeout() -> int:
    """SHUTDOWN_TIMEOUT: seconds SIGTERM waits for requests in flight, and then for the broker's deliveries."""
    return env_int("SHUTDOWN_TIMEOUT", 20, minimum=1)


def serve(app: FastAPI, default_port: int) -> None:
    host = env_str("HOST", "127.0.0.1")
    port = env_int("PORT", default_port, minimum=0)
    # uvicorn handles SIGTERM/SIGINT: it stops accepting, lets in-flight requests finish (bounded by
    # timeout_graceful_shutdown) and then runs the app's lifespan shutdown, which flushes the spans.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=shutdown_timeout(),
        lifespan="on",
    )
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:
        # Ctrl-C by hand: uvicorn has already shut down gracefully and re-raises the signal, which Python turns
        # into a traceback that would only alarm. 130 is the shell's status for a SIGINT.
        raise SystemExit(130) from None
