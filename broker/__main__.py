"""`python -m broker`: serve broker on HOST:PORT (default 127.0.0.1:8082)."""

from common.service.run import run

run("broker")
