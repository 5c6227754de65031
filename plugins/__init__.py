"""What the services run with, chosen by configuration and never imported by first or second: OpenTelemetry
plug-ins registered as entry points in pyproject.toml (propagators, exporter, sampler), the bounded uvicorn
protocol (`UVICORN_HTTP`), the logging configuration (`UVICORN_LOG_CONFIG`) and the receiving layer in front of
each app. Each module says which upstream gap it fills and when to delete it."""
