"""How a service runs, apart from tracing: `app` (the one skeleton), `run` (`python -m <service>`), `server`
(uvicorn, bounded), `settings`, `logs`, `header_logging`, `http_client`, `incoming` (bounded bodies, events)."""
