"""Delivery from the broker to Trigger subscribers: retries with backoff, then the dead-letter sink.

Every event the ingress accepted (202) ends in exactly one outcome log line: delivered, dead-lettered, or
lost (no dead-letter sink, or the sink failed too), each with the event id and trace id.
"""

from __future__ import annotations

import asyncio
import logging

import httpx
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from broker.triggers import Trigger
from common import client_spans, cloudevent
from common.ids import current_trace_id

log = logging.getLogger("broker")
tracer = trace.get_tracer("broker")

# Knative retries these answers and network errors; any other 4xx is final (the subscriber refused the event).
_RETRYABLE = frozenset({404, 408, 409, 429})


# Posts under way at once. Above httpx's 20 kept-alive connections the pool would open and close a connection
# per post, and it scans every connection on each request, so a backlog would make each delivery dearer in turn;
# deliveries beyond this wait their turn in the queue (their span includes the wait).
MAX_POSTS_IN_FLIGHT = 16
# Deliveries accepted and not yet finished. Beyond it the ingress waits for room before it answers 202, so a
# sender faster than the subscriber is slowed to the subscriber's pace instead of growing the broker's memory
# without bound (the bench measured 635 deliveries pending after 6 s of load without it).
MAX_PENDING_DELIVERIES = 256


def _retryable(status: int) -> bool:
    return status in _RETRYABLE or status >= 500


class Dispatcher:
    """Runs deliveries in the background and remembers them, so shutdown can wait for them to finish."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client
        self._post_slots = asyncio.Semaphore(MAX_POSTS_IN_FLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()
        self._backlog = asyncio.Semaphore(MAX_PENDING_DELIVERIES)
        """One unit per delivery accepted and not yet finished; `room_for` takes them, `_finished` gives back."""

    async def room_for(self, count: int) -> None:
        """Wait until `count` more deliveries fit under MAX_PENDING_DELIVERIES; `dispatch` them next."""
        for _ in range(count):
            await self._backlog.acquire()

    def dispatch(self, event: cloudevent.Event, triggers: list[Trigger]) -> None:
        """Start delivering `event` to each of `triggers`, for which `room_for(len(triggers))` made room."""
        parent = otel_context.get_current()
        for trigger in triggers:
            # The name carries what a log line about this delivery needs when it ends abnormally.
            name = f"event {event.id} to {trigger.subscriber} ({trigger.name}), traceid={current_trace_id()}"
            task = asyncio.create_task(self._deliver(trigger, event, parent), name=name)
            self._tasks.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._backlog.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("%s LOST: delivery failed unexpectedly", task.get_name(), exc_info=task.exception())

    async def drain(self, timeout: float) -> None:
        """Wait for deliveries under way (SIGTERM); log each one that cannot finish in time."""
        if not self._tasks:
            return
        log.info("waiting up to %.0fs for %d deliveries under way", timeout, len(self._tasks))
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            log.error("%s LOST: delivery still under way at shutdown was cancelled", task.get_name())
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
                    log.info(
                        "event %s delivered to %s (%s), traceid=%s",
                        event.id,
                        trigger.subscriber,
                        trigger.name,
                        current_trace_id(),
                    )
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
        try:
            # client_spans.post makes the CLIENT span and injects its context into the headers.
            async with self._post_slots:
                reply = await client_spans.post(self._client, url, headers, body, trigger.delivery.timeout or None)
        except httpx.TimeoutException:
            return "timed out", True
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}", True
        if reply.status_code < 300:
            return None, False
        return f"answered {reply.status_code}", _retryable(reply.status_code)
