"""Code shared by first, second and broker: telemetry, logging, CloudEvents, serving."""
