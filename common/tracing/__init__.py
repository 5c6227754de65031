"""How the services trace, in the order one request meets it: `setup` (OpenTelemetry from `OTEL_*`),
`http_in` (the SERVER span that continues the caller's context), `events` (the PRODUCER and CONSUMER spans),
`http_out` (the CLIENT span the context leaves in), `propagators` (which headers carry it)."""
