"""docs/workshop/compose-*.yml: the workshop's switches for `make up`, as Compose v2 resolves them on top of
docker-compose.yml (no engine needed to render)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.containers import dockerfiles
from tests.containers.conftest import resolved_compose
from tools import zero_code
from tools.stack import ROOT

SERVICES = ("first", "broker", "second")


def _config(extra: str | None, **env: str) -> dict[str, Any]:
    return resolved_compose("docker-compose.yml" + (f":docs/workshop/{extra}" if extra else ""), **env)


@pytest.fixture(scope="module")
def compose_config() -> dict[str, Any]:
    """docker-compose.yml alone, resolved the same way."""
    return _config(None)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, {"PROPAGATE_CONTEXT": "true", "EVENT_TRACE_EXTENSION": "false"}),
        ({"PROPAGATE_CONTEXT": "false"}, {"PROPAGATE_CONTEXT": "false", "EVENT_TRACE_EXTENSION": "false"}),
        ({"EVENT_TRACE_EXTENSION": "true"}, {"PROPAGATE_CONTEXT": "true", "EVENT_TRACE_EXTENSION": "true"}),
    ],
)
def test_switches_reach_first_and_only_first(
    compose_config: dict[str, Any], env: dict[str, str], expected: dict[str, str]
) -> None:
    config = _config("compose-switches.yml", **env)
    first = config["services"]["first"]["environment"]
    assert {name: first[name] for name in expected} == expected
    base = compose_config["services"]
    assert {k: v for k, v in first.items() if k not in expected} == base["first"]["environment"]
    for name in ("broker", "second", "jaeger"):
        assert config["services"][name] == base[name], f"{name} must not change"


def test_zero_code_runs_each_image_command_under_opentelemetry_instrument(compose_config: dict[str, Any]) -> None:
    config = _config("compose-zero-code.yml")
    for name in SERVICES:
        service = config["services"][name]
        image_cmd = dockerfiles.stages(ROOT / name / "Dockerfile")[-1].cmd()
        assert service["entrypoint"] == [zero_code.LAUNCHER[0].rsplit("/", 1)[-1]]
        assert service["command"] == image_cmd, f"{name}: the entrypoint clears the image's CMD; repeat it"
        env = service["environment"]
        assert {k: env[k] for k in zero_code.ENV} == zero_code.ENV, f"{name}: the settings of make run ZERO_CODE=1"
        assert {k: v for k, v in env.items() if k not in zero_code.ENV} == compose_config["services"][name][
            "environment"
        ]


def test_the_stack_keeps_opentelemetrys_default_propagators(compose_config: dict[str, Any]) -> None:
    """W3C only, as Knative >= 1.19: no service names OTEL_PROPAGATORS unless the B3 switch is added."""
    for name in SERVICES:
        assert "OTEL_PROPAGATORS" not in compose_config["services"][name]["environment"], name


def test_the_b3_switch_adds_b3_before_w3c_on_every_service(compose_config: dict[str, Any]) -> None:
    config = _config("compose-b3.yml")
    for name in SERVICES:
        env = config["services"][name]["environment"]
        assert env["OTEL_PROPAGATORS"] == "b3multi_strict,tracecontext_strict,baggage", name
        assert {k: v for k, v in env.items() if k != "OTEL_PROPAGATORS"} == compose_config["services"][name][
            "environment"
        ]
    assert config["services"]["jaeger"] == compose_config["services"]["jaeger"]
