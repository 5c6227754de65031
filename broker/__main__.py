"""`python -m broker`: serve broker on HOST:PORT (default 127.0.0.1:8082)."""

from common.propagation import propagator_names

# Checked before OpenTelemetry is imported, which reads OTEL_PROPAGATORS itself and would crash on a bad name.
propagator_names()

from broker.app import DEFAULT_PORT, create_app  # noqa: E402
from common.server import serve  # noqa: E402

serve(create_app(), DEFAULT_PORT)
