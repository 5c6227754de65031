"""`python -m second`: serve second on HOST:PORT (default 127.0.0.1:8081)."""

from common.service.run import run

run("second")
