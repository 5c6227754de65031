"""Trigger manifests as the local broker reads them: filters, subscribers, delivery settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.triggers import ConfigError, Delivery, Trigger, load_routing, parse_duration, parse_subscribers
from first.app import EVENT_SOURCE, EVENT_TYPE
from plugins.cloudevents import Event

ROOT = Path(__file__).resolve().parents[2]
SUBSCRIBERS = {"second": "http://127.0.0.1:9001"}


def _event(**attributes: str) -> Event:
    return Event({"specversion": "1.0", "id": "1", "source": "s", "type": "t", **attributes})


def test_the_repository_trigger_routes_firsts_events_to_second() -> None:
    routing = load_routing(ROOT / "config", SUBSCRIBERS)
    assert ("default", "default") in routing.brokers
    [trigger] = routing.for_broker("default", "default")
    assert trigger.name == "first-to-second"
    assert trigger.span_name == "trigger:first-to-second.default"
    assert trigger.subscriber == "http://127.0.0.1:9001"
    assert trigger.matches(_event(type=EVENT_TYPE, source=EVENT_SOURCE))
    assert not trigger.matches(_event(type=EVENT_TYPE + ".other"))
    assert trigger.delivery.retry >= 1
    # The `dead-letter` component is played by the broker's dead-letter file unless mapped to a URL.
    assert trigger.delivery.dead_letter_sink is None
    mapped = load_routing(ROOT / "config", {**SUBSCRIBERS, "dead-letter": "http://127.0.0.1:9002"})
    assert mapped.triggers[0].delivery.dead_letter_sink == "http://127.0.0.1:9002/dead-letter"


@pytest.mark.parametrize(
    ("filter_", "attributes", "matches"),
    [
        ({}, {}, True),
        ({"type": "t"}, {}, True),
        ({"type": "T"}, {}, False),
        ({"type": "t", "source": "s"}, {}, True),
        ({"type": "t", "source": "other"}, {}, False),
        ({"myext": "v"}, {"myext": "v"}, True),
        ({"myext": "v"}, {}, False),
        ({"myext": ""}, {}, False),
        ({"type": "t "}, {}, False),
    ],
)
def test_filter_is_exact_attribute_match(filter_: dict[str, str], attributes: dict[str, str], matches: bool) -> None:
    trigger = Trigger("t", "default", "default", "http://x", filter=filter_)
    assert trigger.matches(_event(**attributes)) is matches


@pytest.mark.parametrize(
    ("text", "seconds"), [("PT0.2S", 0.2), ("PT1S", 1.0), ("PT1M", 60.0), ("PT1H0.5S", 3600.5), ("P1D", 86400.0)]
)
def test_iso_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "P", "PT", "0.2", "PT-1S", "1S", "PTS"])
def test_bad_durations_are_named(text: str) -> None:
    with pytest.raises(ConfigError, match="ISO 8601"):
        parse_duration(text)


def test_backoff_follows_knative() -> None:
    exponential = Delivery(retry=3, backoff_policy="exponential", backoff_delay=0.2)
    linear = Delivery(retry=3, backoff_policy="linear", backoff_delay=0.2)
    assert [exponential.delay_before(n) for n in (1, 2, 3)] == pytest.approx([0.4, 0.8, 1.6])
    assert [linear.delay_before(n) for n in (1, 2, 3)] == pytest.approx([0.2, 0.4, 0.6])


def test_subscriber_map() -> None:
    assert parse_subscribers("second=http://a:1, sink=https://b") == {"second": "http://a:1", "sink": "https://b"}
    for bad in ("second", "second=", "=http://a", "second=ftp://a"):
        with pytest.raises(ConfigError, match="name=http"):
            parse_subscribers(bad)


def test_unmapped_subscriber_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'second'.*BROKER_SUBSCRIBERS.*second=http://host:port"):
        load_routing(ROOT / "config", {})


def test_trigger_for_unknown_broker_is_a_clear_error(tmp_path: Path) -> None:
    manifest = tmp_path / "t.yaml"
    manifest.write_text(
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t}\n"
        "spec: {broker: nope, subscriber: {uri: 'http://x'}}\n"
    )
    with pytest.raises(ConfigError, match="names broker 'nope'"):
        load_routing(manifest, {})
