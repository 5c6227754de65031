"""`python -m <service>`: check the settings OpenTelemetry would crash on, then serve the service's app."""

from __future__ import annotations

from importlib import import_module

from common.tracing.propagators import propagator_names


def run(service: str) -> None:
    """Serve `<service>.app:create_app()` on HOST:PORT (default the module's DEFAULT_PORT)."""
    # Checked before OpenTelemetry's `propagate` module is imported (by the app), which reads OTEL_PROPAGATORS
    # itself and would crash with a traceback on a bad name.
    propagator_names()
    from common.service.server import serve

    app = import_module(f"{service}.app")
    serve(app.create_app(), app.DEFAULT_PORT)
