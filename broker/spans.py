"""The broker's spans about an event, named and attributed as Knative's broker names them
(`broker:<broker>.<namespace>` at the ingress, `trigger:<trigger>.<namespace>` at the filter), with the messaging
and CloudEvents convention attributes."""

from __future__ import annotations

from opentelemetry.util.types import Attributes

from plugins.cloudevents import Event


def event_attributes(event: Event, destination: str) -> Attributes:
    attributes = {
        "messaging.system": "knative",
        "messaging.destination.name": destination,
        "cloudevents.event_id": event.id,
        "cloudevents.event_source": event.source,
        "cloudevents.event_type": event.type,
    }
    if event.subject is not None:
        attributes["cloudevents.event_subject"] = event.subject
    return attributes
