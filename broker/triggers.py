"""Brokers and Triggers read from the same Knative manifests that `kubectl apply -k config/` applies."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from plugins.cloudevents import Event

_ISO_DURATION = re.compile(
    r"^P(?:(?P<days>\d+(?:\.\d+)?)D)?(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


DEAD_LETTER_SERVICE = "dead-letter"
"""The Knative Service the Trigger's deadLetterSink names (config/dead-letter.yaml). Locally, unless
BROKER_SUBSCRIBERS maps it to a URL, the broker's dead-letter file plays it (broker/dead_letters.py), as the
broker plays Knative's."""


class ConfigError(Exception):
    """The manifests or the subscriber map cannot drive the broker; the message names the file and field."""


def parse_duration(text: str) -> float:
    """Seconds in an ISO 8601 duration such as `PT0.2S` (the format of Knative's `backoffDelay`)."""
    match = _ISO_DURATION.match(text)
    if not match or text in ("P", "PT") or text.endswith("T"):
        raise ConfigError(f"{text!r} is not an ISO 8601 duration such as PT0.2S")
    parts = {name: float(value) for name, value in match.groupdict().items() if value}
    return float(
        parts.get("days", 0.0) * 86400
        + parts.get("hours", 0.0) * 3600
        + parts.get("minutes", 0.0) * 60
        + parts.get("seconds", 0.0)
    )


@dataclass(frozen=True)
class Delivery:
    """A Trigger's `spec.delivery`: Knative's defaults are no retry and no dead-letter sink."""

    retry: int = 0
    backoff_policy: str = "exponential"
    backoff_delay: float = 0.0
    dead_letter_sink: str | None = None
    """The URL to post an undeliverable event to first; None: straight to the dead-letter file."""
    timeout: float | None = None

    def delay_before(self, retry_number: int) -> float:
        """Wait before retry `retry_number` (1-based), as Knative documents it: backoffDelay * n for linear,
        backoffDelay * 2^n for exponential."""
        factor = float(retry_number) if self.backoff_policy == "linear" else float(2**retry_number)
        return self.backoff_delay * factor


@dataclass(frozen=True)
class Trigger:
    name: str
    namespace: str
    broker: str
    subscriber: str
    """The subscriber's URL (a ref resolved through BROKER_SUBSCRIBERS, or the manifest's own uri)."""
    filter: Mapping[str, str] = field(default_factory=dict)
    delivery: Delivery = field(default_factory=Delivery)

    @property
    def span_name(self) -> str:
        return f"trigger:{self.name}.{self.namespace}"

    def matches(self, event: Event) -> bool:
        """Knative's `filter.attributes`: every listed attribute equals the event's exactly; empty matches all."""
        attributes = event.attributes
        return all(name in attributes and str(attributes[name]) == value for name, value in self.filter.items())


def parse_subscribers(text: str) -> dict[str, str]:
    """`second=http://127.0.0.1:8081,sink=http://...` -> {name: url}."""
    subscribers: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, url = item.partition("=")
        if not sep or not name.strip() or not url.strip().startswith(("http://", "https://")):
            raise ConfigError(f"BROKER_SUBSCRIBERS item {item!r} must look like name=http://host:port")
        subscribers[name.strip()] = url.strip()
    return subscribers


def _documents(path: Path) -> Iterable[tuple[Path, dict[str, Any]]]:
    files = sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml")) if path.is_dir() else [path]
    if not files:
        raise ConfigError(f"no YAML manifests in {path}")
    for file in files:
        try:
            documents = list(yaml.safe_load_all(file.read_text()))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{file}: cannot read manifests: {exc}") from None
        for document in documents:
            if isinstance(document, dict):
                yield file, document


def _destination(file: Path, where: str, spec: Any, subscribers: Mapping[str, str]) -> str:
    if not isinstance(spec, dict):
        raise ConfigError(f"{file}: {where} must have ref or uri")
    uri = str(spec.get("uri") or "")
    name = (spec.get("ref") or {}).get("name")
    if not name:
        if not uri:
            raise ConfigError(f"{file}: {where} has neither ref.name nor uri")
        return uri
    if name not in subscribers:
        raise ConfigError(
            f"{file}: {where} refers to {name!r}, which BROKER_SUBSCRIBERS does not map to a URL "
            f"(add {name}=http://host:port)"
        )
    # A Knative Destination with both ref and uri: the uri is a path relative to the ref's address.
    return subscribers[name].rstrip("/") + uri if uri else subscribers[name]


def _delivery(file: Path, name: str, spec: Any, subscribers: Mapping[str, str]) -> Delivery:
    if not spec:
        return Delivery()
    if not isinstance(spec, dict):
        raise ConfigError(f"{file}: trigger {name}: spec.delivery must be a mapping")
    retry = spec.get("retry", 0)
    if not isinstance(retry, int) or retry < 0:
        raise ConfigError(f"{file}: trigger {name}: spec.delivery.retry must be a whole number >= 0")
    policy = spec.get("backoffPolicy", "exponential")
    if policy not in ("exponential", "linear"):
        raise ConfigError(f"{file}: trigger {name}: backoffPolicy must be exponential or linear")
    dls = spec.get("deadLetterSink")
    named = (dls.get("ref") or {}).get("name") if isinstance(dls, dict) else None
    if named == DEAD_LETTER_SERVICE and DEAD_LETTER_SERVICE not in subscribers:
        dls = None  # the local dead-letter file stands in for the component
    timeout = spec.get("timeout")
    return Delivery(
        retry=retry,
        backoff_policy=policy,
        backoff_delay=parse_duration(str(spec.get("backoffDelay", "PT0S"))),
        dead_letter_sink=_destination(file, f"trigger {name}: deadLetterSink", dls, subscribers) if dls else None,
        timeout=parse_duration(str(timeout)) if timeout else None,
    )


@dataclass(frozen=True)
class Routing:
    brokers: frozenset[tuple[str, str]]
    """(namespace, name) of every Broker."""
    triggers: tuple[Trigger, ...]

    def for_broker(self, namespace: str, name: str) -> list[Trigger]:
        return [t for t in self.triggers if t.namespace == namespace and t.broker == name]


def load_routing(path: Path, subscribers: Mapping[str, str]) -> Routing:
    brokers: set[tuple[str, str]] = set()
    triggers: list[Trigger] = []
    for file, doc in _documents(path):
        kind, meta = doc.get("kind"), doc.get("metadata") or {}
        namespace = meta.get("namespace", "default")
        if kind == "Broker":
            brokers.add((namespace, meta["name"]))
        elif kind == "Trigger":
            name = meta.get("name")
            spec = doc.get("spec") or {}
            attributes = (spec.get("filter") or {}).get("attributes") or {}
            if not name or not spec.get("broker"):
                raise ConfigError(f"{file}: a Trigger needs metadata.name and spec.broker")
            triggers.append(
                Trigger(
                    name=name,
                    namespace=namespace,
                    broker=spec["broker"],
                    subscriber=_destination(file, f"trigger {name}: subscriber", spec.get("subscriber"), subscribers),
                    filter={str(k): str(v) for k, v in attributes.items()},
                    delivery=_delivery(file, name, spec.get("delivery"), subscribers),
                )
            )
    for trigger in triggers:
        if (trigger.namespace, trigger.broker) not in brokers:
            raise ConfigError(f"trigger {trigger.name} names broker {trigger.broker!r}, which no manifest defines")
    return Routing(frozenset(brokers), tuple(triggers))
