"""Delivery from the broker to Trigger subscribers: retries with backoff, then the dead-letter sink.

Every event the ingress accepted (202) ends in exactly one outcome log line: delivered, dead-lettered, or
lost (no dead-letter sink, or the sink failed too), each with the event id and trace id.
"""

from __future__ import annotations

import asyncio
import logging

import httpx
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Status, StatusCode

from broker.triggers import Trigger
from common import cloudevent
from common.ids import current_trace_id

log = logging.getLogger("broker")
tracer = trace.get_tracer("broker")

# Knative retries these answers and network errors; any other 4xx is final (the subscriber refused the event).
_RETRYABLE = frozenset({404, 408, 409, 429})


def _retryable(status: int) -> bool:
    return status in _RETRYABLE or status >= 500


class Dispatcher:
    """Runs deliveries in the background and remembers them, so shutdown can wait for them to finish."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client
        self._tasks: set[asyncio.Task[None]] = set()

    def dispatch(self, event: cloudevent.Event, triggers: list[Trigger]) -> None:
        parent = otel_context.get_current()
        for trigger in triggers:
            task = asyncio.create_task(self._deliver(trigger, event, parent))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float) -> None:
        """Wait for deliveries under way (SIGTERM); log each one that cannot finish in time."""
        if not self._tasks:
            return
        log.info("waiting up to %.0fs for %d deliveries under way", timeout, len(self._tasks))
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            log.error("delivery still under way at shutdown was cancelled: %s", task.get_name())
            task.cancel()

    async def _deliver(self, trigger: Trigger, event: cloudevent.Event, parent: otel_context.Context) -> None:
        attributes = {
            "messaging.system": "knative",
            "messaging.destination.name": trigger.span_name,
            "cloudevents.event_id": event.id,
            "cloudevents.event_type": event.type,
            "cloudevents.event_source": event.source,
        }
        with tracer.start_as_current_span(trigger.span_name, context=parent, attributes=attributes) as span:
            attempts = 1 + trigger.delivery.retry
            for attempt in range(1, attempts + 1):
                if attempt > 1:
                    await asyncio.sleep(trigger.delivery.delay_before(attempt - 1))
                problem, retry = await self._post(trigger.subscriber, event, trigger)
                if problem is None:
                    log.info("event %s delivered to %s (%s)", event.id, trigger.subscriber, trigger.name)
                    return
                log.warning(
                    "event %s delivery attempt %d/%d to %s failed: %s, traceid=%s",
                    event.id,
                    attempt,
                    attempts,
                    trigger.subscriber,
                    problem,
                    current_trace_id(),
                )
                if not retry:
                    break
            span.set_status(Status(StatusCode.ERROR, f"not delivered to {trigger.subscriber}"))
            await self._dead_letter(trigger, event)

    async def _dead_letter(self, trigger: Trigger, event: cloudevent.Event) -> None:
        sink = trigger.delivery.dead_letter_sink
        if sink is None:
            log.error(
                "event %s LOST: not delivered to %s and trigger %s has no deadLetterSink, traceid=%s",
                event.id,
                trigger.subscriber,
                trigger.name,
                current_trace_id(),
            )
            return
        problem, _ = await self._post(sink, event, trigger)
        if problem is None:
            log.warning("event %s dead-lettered to %s, traceid=%s", event.id, sink, current_trace_id())
        else:
            log.error(
                "event %s LOST: dead-letter sink %s failed too: %s, traceid=%s",
                event.id,
                sink,
                problem,
                current_trace_id(),
            )

    async def _post(self, url: str, event: cloudevent.Event, trigger: Trigger) -> tuple[str | None, bool]:
        """POST `event` in binary mode, as Knative's broker filter does: (problem or None, worth retrying)."""
        headers, body = cloudevent.to_http(event, "binary")
        propagate.inject(headers)
        try:
            timeout = trigger.delivery.timeout or httpx.USE_CLIENT_DEFAULT
            reply = await self._client.post(url, headers=headers, content=body, timeout=timeout)
        except httpx.TimeoutException:
            return "timed out", True
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}", True
        if reply.status_code < 300:
            return None, False
        return f"answered {reply.status_code}", _retryable(reply.status_code)
