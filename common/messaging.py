"""Span attributes for CloudEvents, per the OpenTelemetry CloudEvents and messaging conventions.

The `{destination}` in `send {destination}` / `process {destination}` is the event type: Knative routes by
type (the Trigger filters on it), it is low-cardinality, and both producer and consumer know it.
"""

from __future__ import annotations

from opentelemetry.util.types import Attributes

from common.cloudevent import Event

MESSAGING_SYSTEM = "knative"


def event_attributes(event: Event, operation: str) -> Attributes:
    attributes: dict[str, str] = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.name": operation,
        "messaging.operation.type": operation,
        "messaging.destination.name": event.type,
        "messaging.message.id": event.id,
        "cloudevents.event_id": event.id,
        "cloudevents.event_source": event.source,
        "cloudevents.event_spec_version": str(event.attributes["specversion"]),
        "cloudevents.event_type": event.type,
    }
    if event.subject is not None:
        attributes["cloudevents.event_subject"] = event.subject
    return attributes
