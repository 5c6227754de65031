"""The one skeleton of the three services: tracing set up, a FastAPI app with its health check, the answers to
rejected requests, the SERVER spans, and the tracer provider flushed when the app stops."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext

from fastapi import FastAPI

from common.service.incoming import answer_rejections
from common.tracing.setup import FASTAPI_TELEMETRY, instrument_app, setup_telemetry

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def service_app(name: str, lifespan: Lifespan | None = None) -> FastAPI:
    """The app of service `name`; `lifespan` holds what the service keeps for its whole life (its HTTP client).
    Add the routes, then the SERVER spans wrap them all when the app starts."""
    telemetry = setup_telemetry(name)

    @asynccontextmanager
    async def lives(app: FastAPI) -> AsyncIterator[None]:
        async with lifespan(app) if lifespan else nullcontext():
            yield
        # After the service's own shutdown (the broker's deliveries drain first): their spans are flushed too.
        telemetry.shutdown()

    app = FastAPI(
        title=name, lifespan=lives, docs_url=None, redoc_url=None, openapi_url=None, telemetry=FASTAPI_TELEMETRY
    )

    # No response model: building one costs ~25 ms of cold start (and imports pydantic.v1) for a fixed body.
    @app.get("/healthz", response_model=None)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    answer_rejections(app)
    instrument_app(app)
    return app
