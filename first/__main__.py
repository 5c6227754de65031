"""`python -m first`: serve first on HOST:PORT (default 127.0.0.1:8080)."""

from common.service.run import run

run("first")
