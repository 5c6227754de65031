"""Memory is bounded in bytes where a client chooses sizes: span attributes are cut at
OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT (an event id may be 1 MiB, and spans wait in the export queue while the trace
backend is away), and the header-name caches keep only short names (a name may be 64 KiB). Each test drives a
real service with large values and reads its resident memory (VmRSS) before and after."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support import running
from tools.stack import Service, free_port

MB = 1024 * 1024


def resident_bytes(service: Service) -> int:
    for line in Path(f"/proc/{service.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/<pid>/status")


def nowhere() -> str:
    """A trace backend that is not there: spans wait in the export queue, as in an outage."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def second(tmp_path: Path) -> Iterator[Service]:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": nowhere(), "DEDUPE_WINDOW": "600"}
    with running("second", env, tmp_path) as service:
        yield service


def test_events_with_1_mib_ids_do_not_stay_in_memory(second: Service) -> None:
    def send(number: int) -> int:
        event = {"specversion": "1.0", "id": f"{number:04d}" + "i" * (MB - 1000), "source": "tests", "type": "t"}
        body = json.dumps(event).encode()
        headers = {"content-type": "application/cloudevents+json"}
        return httpx.post(second.url + "/", headers=headers, content=body, timeout=30).status_code

    send(0)  # the first request loads what every request needs
    before = resident_bytes(second)
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(send, range(1, 151)))
    assert statuses == [204] * 150
    grown = resident_bytes(second) - before
    # Without the attribute limit each CONSUMER span kept its 1 MiB id: 142-152 MB for these 150 (issue 21).
    assert grown < 40 * MB, f"second grew by {grown / MB:.0f} MB for 150 events with 1 MiB ids"


def test_long_distinct_header_names_do_not_stay_in_memory(tmp_path: Path) -> None:
    # first logs each request's headers (plugins/header_logging.py); its sink is not there, so each answer is
    # quick (503) once the headers have been logged.
    env = {"OTEL_TRACES_EXPORTER": "none", "K_SINK": nowhere() + "/default/default"}
    with running("first", env, tmp_path) as first, httpx.Client(timeout=30) as client:

        def send(number: int) -> int:
            name = f"x-{number:05d}-" + "n" * 55_000
            return client.get(first.url + "/", headers={name: "v"}).status_code

        send(0)
        before = resident_bytes(first)
        statuses = [send(number) for number in range(1, 1101)]
        grown = resident_bytes(first) - before
    assert set(statuses) == {503}, set(statuses)
    # Without the length bound the two caches kept 1024 names of 55 KB each: about 60 MB (issue 21).
    assert grown < 25 * MB, f"first grew by {grown / MB:.0f} MB for 1100 distinct 55 KB header names"
