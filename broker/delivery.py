"""Delivery from the broker to Trigger subscribers: retries with backoff, then the dead-letter sink.

Every event the ingress accepted (202) is in the store (broker/store.py) until its outcome, so a broker killed
and started again delivers it then. Each ends in exactly one outcome log line, with the event id and trace id:
`delivered to <subscriber>`, `dead-lettered to <sink>` (the Trigger's deadLetterSink), `dead-lettered to file
<path>` (the dead-letter file, broker/dead_letters.py: when the Trigger names the `dead-letter` component, has
no sink, its sink failed too, the delivery was still under way at shutdown, or it failed unexpectedly), or
`LOST` only when even the file could not be written (the event then stays in the store, delivered again at the
next start).
"""

from __future__ import annotations

import asyncio
import logging

import httpx
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Status, StatusCode

from broker.client_span import client_span
from broker.dead_letters import DeadLetterFile
from broker.spans import event_attributes
from broker.store import EventStore
from broker.triggers import Trigger
from event_tracing import trace_id as current_trace_id
from plugins.cloudevents import Event, to_http

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
# And in bytes: 256 deliveries of 1 MiB events (MAX_EVENT_BYTES) would hold 256 MiB. An event larger than this
# alone still goes once nothing else is held.
MAX_PENDING_BYTES = 32 * 1024 * 1024


def _retryable(status: int) -> bool:
    return status in _RETRYABLE or status >= 500


class Dispatcher:
    """Runs deliveries in the background and remembers them, so shutdown can wait for them to finish."""

    def __init__(self, client: httpx.AsyncClient, dead_letters: DeadLetterFile, store: EventStore) -> None:
        self._client = client
        self._dead_letters = dead_letters
        self._store = store
        self._post_slots = asyncio.Semaphore(MAX_POSTS_IN_FLIGHT)
        self._tasks: dict[asyncio.Task[None], tuple[Trigger, Event, str | None, int, int]] = {}
        """Deliveries under way, with what shutdown needs to keep the ones it must cut short."""
        self._backlog = asyncio.Semaphore(MAX_PENDING_DELIVERIES)
        """One unit per delivery accepted and not yet finished; `room_for` takes them, `_finished` gives back."""
        self._bytes_held = 0
        """The sizes of the events of the deliveries under way (one charge per delivery)."""
        self._bytes_freed = asyncio.Event()

    async def room_for(self, count: int, size: int) -> None:
        """Wait until `count` more deliveries of an event of `size` bytes fit under MAX_PENDING_DELIVERIES and
        MAX_PENDING_BYTES; `dispatch` them next."""
        for _ in range(count):
            await self._backlog.acquire()
        while self._bytes_held and self._bytes_held + size * count > MAX_PENDING_BYTES:
            self._bytes_freed.clear()
            await self._bytes_freed.wait()
        self._bytes_held += size * count

    def give_back(self, count: int, size: int) -> None:
        """Return the room `room_for(count, size)` took, for deliveries that will not be dispatched."""
        for _ in range(count):
            self._backlog.release()
        self._bytes_held -= size * count
        self._bytes_freed.set()

    def dispatch(
        self,
        event: Event,
        size: int,
        deliveries: list[tuple[Trigger, int]],
        parent: otel_context.Context | None = None,
    ) -> None:
        """Start delivering `event` for each (Trigger, store row), for which `room_for(len(deliveries))` made
        room (`size`: the event's, as given to `room_for`); `parent`: the trace context to deliver in (default: the
        current one)."""
        parent = otel_context.get_current() if parent is None else parent
        span_context = trace.get_current_span(parent).get_span_context()
        shown = trace.format_trace_id(span_context.trace_id) if span_context.is_valid else None
        for trigger, row in deliveries:
            task = asyncio.create_task(self._deliver(trigger, event, parent, row))
            self._tasks[task] = (trigger, event, shown, row, size)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        held = self._tasks.pop(task, None)
        self.give_back(1, held[4] if held else 0)

    async def give_up(self, trigger: Trigger, event: Event, reason: str, row: int) -> None:
        """Keep `event` in the dead-letter file without delivering it, and forget its store row."""
        if await self._to_file(trigger, event, reason, None):
            await self._store.remove(row)

    async def drain(self, timeout: float) -> None:
        """Wait for deliveries under way (SIGTERM); keep each one that cannot finish in time in the file."""
        if not self._tasks:
            return
        log.info("waiting up to %.0fs for %d deliveries under way", timeout, len(self._tasks))
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        if not pending:
            return
        cut_short = [self._tasks[task] for task in pending]
        for task in pending:
            task.cancel()
        await asyncio.wait(pending)
        for trigger, event, trace_id, row, _ in cut_short:
            reason = f"delivery to {trigger.subscriber} still under way at shutdown (UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN)"
            if await self._to_file(trigger, event, reason, trace_id):
                await self._store.remove(row)

    async def _deliver(self, trigger: Trigger, event: Event, parent: otel_context.Context, row: int) -> None:
        attributes = event_attributes(event, trigger.span_name)
        with tracer.start_as_current_span(trigger.span_name, context=parent, attributes=attributes) as span:
            try:
                over = await self._attempts(trigger, event, span)
            except Exception as exc:
                # A bug here must not lose the event: keep it, and say what happened.
                log.exception("event %s: delivery failed unexpectedly", event.id)
                reason = f"delivery failed unexpectedly: {exc!r}"
                over = await self._to_file(trigger, event, reason, current_trace_id())
        if over:
            await self._store.remove(row)

    async def _attempts(self, trigger: Trigger, event: Event, span: trace.Span) -> bool:
        """Post with the Trigger's retries and backoff; then the dead-letter sink. Whether the delivery is over:
        delivered, or dead-lettered to the sink or the file."""
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
                return True
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
        return await self._dead_letter(trigger, event, f"not delivered to {trigger.subscriber}: {problem}")

    async def _dead_letter(self, trigger: Trigger, event: Event, reason: str) -> bool:
        sink = trigger.delivery.dead_letter_sink
        if sink is None:
            return await self._to_file(trigger, event, reason, current_trace_id())
        problem, _ = await self._post(sink, event, trigger)
        if problem is None:
            log.warning("event %s dead-lettered to %s, traceid=%s", event.id, sink, current_trace_id())
            return True
        reason = f"{reason}; dead-letter sink {sink} failed too: {problem}"
        return await self._to_file(trigger, event, reason, current_trace_id())

    async def _to_file(self, trigger: Trigger, event: Event, reason: str, trace_id: str | None) -> bool:
        """Keep `event` in the dead-letter file (True); LOST only when even that fails (False)."""
        path = self._dead_letters.path
        try:
            await self._dead_letters.keep(event, reason, trigger.name, trigger.subscriber, trace_id)
        except (OSError, ValueError) as exc:
            log.error(
                "event %s LOST: %s, and the dead-letter file %s could not be written: %s "
                "(it stays in the broker's store, delivered again at the next start), traceid=%s",
                event.id,
                reason,
                path,
                exc,
                trace_id,
            )
            return False
        log.warning("event %s dead-lettered to file %s (%s), traceid=%s", event.id, path, reason, trace_id)
        return True

    async def _post(self, url: str, event: Event, trigger: Trigger) -> tuple[str | None, bool]:
        """POST `event` in the content mode it came in (forwarded as sent: a structured event re-encoded in binary
        mode can outgrow the subscriber's head limits), (problem or None, worth retrying)."""
        headers, body = to_http(event, event.mode)
        try:
            async with self._post_slots:
                with client_span(url, trigger.delivery.timeout or None) as post:
                    # The broker's propagation step: the subscriber's SERVER span continues this CLIENT span.
                    propagate.inject(headers)
                    reply = await post(self._client, headers, body)
        except httpx.TimeoutException:
            return "timed out", True
        except Exception as exc:
            # httpx.HTTPError mostly; whatever else a broken connection raises is the same failure: retried.
            return f"{type(exc).__name__}: {exc}", True
        if reply.status_code < 300:
            return None, False
        return f"answered {reply.status_code}", _retryable(reply.status_code)
