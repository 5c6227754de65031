"""The processes the workshop tests add to the session's stack, all started side by side once per package.

Each is a real service process (`python -m first|broker|second`, or the untraced hop) on a free loopback port,
exporting to the session's OTLP receiver. Where a test needs a broker or a second it uses the session `stack`'s,
so only what a switch changes runs twice.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.faults.peers import Peer, Script
from tools import zero_code
from tools.otlp_receiver import Receiver
from tools.stack import ROOT, Service, Stack, free_port, running_all, start_service

FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "50"}
SINK_PATHS = ("/broken", "/binary", "/structured", "/zero-code", "/b3-defer-code", "/b3-defer-zero-code")
"""Paths of the recording sink: each lone first posts its events to its own."""


@dataclass(frozen=True)
class Spec:
    service: str
    env: dict[str, str]
    zero_code: bool = False


@pytest.fixture(scope="package")
def sink() -> Iterator[Peer]:
    """A real HTTP server standing in for the broker: it answers 202 and records every header and body."""
    with Peer(dict.fromkeys(SINK_PATHS, Script(202))) as peer:
        yield peer


@pytest.fixture(scope="package")
def lone(
    sink: Peer, stack: Stack, receiver: Receiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Service]]:
    """By name:
    - broken, binary, structured, zero-code: first posting to the sink at /<name> with PROPAGATE_CONTEXT=false
      (and the extension asked for too), EVENT_TRACE_EXTENSION=true (binary or structured mode), or under
      opentelemetry-instrument with a batch delay no test waits out (spans leave only when it stops);
    - broken-e2e: first with PROPAGATE_CONTEXT=false posting to the session stack's broker;
    - hop-first -> hop-broker -> hop -> the session stack's second: the extension over a hop that drops headers;
    - zero-code-second: second under opentelemetry-instrument, the same long batch delay.
    """
    ports = {name: free_port() for name in ("hop", "hop-broker")}
    into_sink = {"OTEL_SERVICE_NAME": "first", **FAST_EXPORT}
    late_export = {**zero_code.ENV, "OTEL_BSP_SCHEDULE_DELAY": "600000"}
    specs = {
        "broken": Spec("first", {**into_sink, "PROPAGATE_CONTEXT": "false", "EVENT_TRACE_EXTENSION": "true"}),
        "binary": Spec("first", {**into_sink, "EVENT_TRACE_EXTENSION": "true"}),
        "structured": Spec("first", {**into_sink, "EVENT_TRACE_EXTENSION": "true", "EVENT_MODE": "structured"}),
        "zero-code": Spec("first", {**into_sink, **late_export}, zero_code=True),
        "broken-e2e": Spec(
            "first",
            {
                **FAST_EXPORT,
                "PROPAGATE_CONTEXT": "false",
                "K_SINK": stack.url("broker") + "/default/default",
            },
        ),
        "hop-first": Spec(
            "first",
            {
                **FAST_EXPORT,
                "EVENT_TRACE_EXTENSION": "true",
                "K_SINK": f"http://127.0.0.1:{ports['hop-broker']}/default/default",
            },
        ),
        "hop-broker": Spec(
            "broker",
            {
                **FAST_EXPORT,
                "BROKER_CONFIG": str(ROOT / "config"),
                "BROKER_SUBSCRIBERS": f"second=http://127.0.0.1:{ports['hop']}",
                # Its own store (broker/store.py), not the default one in the clone.
                "BROKER_STORE": str(tmp_path_factory.mktemp("hop-broker") / "broker-store.sqlite3"),
            },
        ),
        "zero-code-second": Spec("second", late_export, zero_code=True),
    }
    log_dir = tmp_path_factory.mktemp("workshop")
    services: dict[str, Service] = {
        "hop": start_service(
            "untraced-hop",
            ports["hop"],
            {"HOP_TARGET": stack.url("second")},
            log_dir / "hop.log",
            command=[sys.executable, "-m", "tools.untraced_hop"],
        )
    }
    for name, spec in specs.items():
        sink_path = f"/{name}"
        env = {
            "OTEL_SERVICE_NAME": spec.service,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            **({"K_SINK": sink.url + sink_path} if sink_path in SINK_PATHS else {}),
            **spec.env,
        }
        command = [*zero_code.LAUNCHER, sys.executable, "-m", spec.service] if spec.zero_code else None
        port = ports.get(name) or free_port()
        services[name] = start_service(spec.service, port, env, log_dir / f"{name}.log", command=command)
    with running_all(services) as healthy:
        yield healthy
