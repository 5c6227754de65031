"""The bounded server every service runs with: uvicorn's httptools protocol with bounds on each connection,
chosen by uvicorn's own `http` setting (`UVICORN_HTTP=plugins.server:BoundedHttpToolsProtocol`), never imported
by an app. In front of the app it puts the receiving layer (plugins/receive.py) and a clean end at shutdown.

Bounds (docs/robustness.md, "Connections and request heads"):
- a request head (request line and headers) over MAX_HEADER_BYTES or with more than MAX_HEADERS fields gets
  431 and the connection is closed, before the application or any trace propagator reads a header;
- a connection that has not completed a request head within HEADER_TIMEOUT seconds of opening (or of its last
  answer) is closed: idle keep-alive connections and half-sent heads alike;
- beyond MAX_CONNECTIONS open connections a new one is answered 503 at once and closed, with a log line, so a
  flood of idle connections cannot use up the process's file descriptors;
- a request body must arrive within BODY_TIMEOUT seconds of its head, and, after the first RATE_GRACE seconds, at
  BODY_MIN_RATE bytes a second on average: otherwise it is answered 408 (JSON naming the setting) and closed,
  with one log line, so a sender trickling a large Content-Length cannot hold a connection (and, a thousand of
  them, every connection) for ever;
- the Host header is checked as RFC 9112 section 3.2 says (exactly one on HTTP/1.1, a valid `host[:port]`), and
  every malformed request gets the project's JSON 400 instead of uvicorn's plain-text one.

uvicorn has settings for the keep-alive timeout (used) and for concurrency (`limit_concurrency`, not used: it
answers 503 only once a request head has arrived, and keeps the connection, so idle connections would still
use up descriptors), but none for the size of a head or the time to receive it with the httptools parser
(`h11_max_incomplete_event_size` exists only for the slower h11 parser), and the connection limit above is
missing too, and neither a body time bound nor a Host check exists (measured: a body trickling one byte a
second kept its connection for more than 60 s; `Host: a b` and two Host headers were answered 200).
`BoundedHttpToolsProtocol` adds those to uvicorn's own protocol class in a few lines; delete it when
uvicorn grows them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from plugins.receive import ReceivingLayer
from plugins.settings import env_bool, env_float, env_int

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = env_int("MAX_HEADER_BYTES", 64 * 1024, minimum=1024)
MAX_HEADERS = env_int("MAX_HEADERS", 100, minimum=10)
HEADER_TIMEOUT = env_float("HEADER_TIMEOUT", 10.0, minimum=0.1)
MAX_CONNECTIONS = env_int("MAX_CONNECTIONS", 1000, minimum=1)
BODY_TIMEOUT = env_float("BODY_TIMEOUT", 30.0, minimum=0.1)
BODY_MIN_RATE = env_int("BODY_MIN_RATE", 1024, minimum=0)
"""Bytes a second a body must average once RATE_GRACE has passed; 0: only BODY_TIMEOUT bounds it."""
RATE_GRACE = 5.0
"""Seconds before the rate is judged: a client's first packets may come slowly (TCP slow start, a busy peer)."""
BODY_CHECK_INTERVAL = 0.5
"""How often a body in progress is checked against the bounds (one timer per connection receiving a body)."""
STRICT_CLOUDEVENTS = env_bool("STRICT_CLOUDEVENTS", False)
# RFC 9112 3.2 / RFC 3986 3.2.2: Host = uri-host [ ":" port ]; uri-host = IP-literal / IPv4address / reg-name.
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.vV]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?")


def shutdown_timeout() -> int:
    """uvicorn's UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN: seconds SIGTERM waits for requests in flight (and then the
    broker for its deliveries)."""
    return env_int("UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN", 20, minimum=1)


def _refusal(status: bytes, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    head = f"content-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
    return b"HTTP/1.1 " + status + b"\r\n" + head.encode() + body


_TOO_MANY_CONNECTIONS = _refusal(
    b"503 Service Unavailable", f"more than {MAX_CONNECTIONS} open connections (MAX_CONNECTIONS); try again later"
)
_HEAD_TOO_LARGE = _refusal(
    b"431 Request Header Fields Too Large",
    f"the request head is over {MAX_HEADER_BYTES} bytes (MAX_HEADER_BYTES) or {MAX_HEADERS} fields (MAX_HEADERS)",
)


class _HeadTooLarge(Exception):
    """Raised inside a parser callback: httptools stops parsing and uvicorn calls send_400_response."""


class _BadHost(Exception):
    """Raised inside a parser callback for a Host header RFC 9112 refuses; answered by send_400_response."""


def host_problem(headers: list[tuple[bytes, bytes]], http_version: str) -> str | None:
    """Why a request head's Host header breaks RFC 9112 section 3.2, or None. Linear in the head's size."""
    hosts = [value for name, value in headers if name == b"host"]
    if len(hosts) > 1:
        return f"the request has {len(hosts)} Host headers; RFC 9112 allows exactly one"
    if not hosts:
        return "an HTTP/1.1 request must have a Host header (RFC 9112 section 3.2)" if http_version == "1.1" else None
    if not _HOST.fullmatch(hosts[0]):
        return "the Host header is not a valid host[:port] (RFC 9112 section 3.2, RFC 3986 section 3.2.2)"
    return None


_wrapped: dict[int, ASGIApp] = {}
"""The app each protocol instance serves, wrapped once per loaded app (uvicorn makes a protocol a connection)."""


def _wrap(app: ASGIApp) -> ASGIApp:
    if id(app) not in _wrapped:
        _wrapped[id(app)] = EndAtShutdown(ReceivingLayer(app, STRICT_CLOUDEVENTS))
    return _wrapped[id(app)]


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the bounds of the module's docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app = _wrap(self.app)
        self._head_bytes = 0
        self._head_received = 0
        self._head_fields = 0
        self._in_head = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._too_large = False
        self._bad_request: str | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_started = 0.0
        self._body_received = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > MAX_CONNECTIONS:
            log.warning(
                "refused a connection from %s: %d connections open, the limit is MAX_CONNECTIONS=%d",
                self.client[0] if self.client else "?",
                len(self.connections) - 1,
                MAX_CONNECTIONS,
            )
            transport.write(_TOO_MANY_CONNECTIONS)
            transport.close()
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        self._disarm_body_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # A head that keeps coming past the limit is refused before the parser buffers more of it. The raw count
        # is kept apart from the parsed one (_head_bytes, which counts a header spanning chunks once it is
        # complete) and takes only chunks that were head from end to end: a head in progress before and after.
        if self._in_head and self._head_received > MAX_HEADER_BYTES:
            self._refuse_head()
            return
        was_in_head = self._in_head
        super().data_received(data)
        if was_in_head and self._in_head:
            self._head_received += len(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes, self._head_received, self._head_fields = True, 0, 0, 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_fields += 1
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm_head_timer()
        self._bad_request = host_problem(self.headers, self.parser.get_http_version())
        if self._bad_request is not None:
            raise _BadHost
        super().on_headers_complete()
        # The body's clock starts with the head; a request without a body completes at once and disarms it.
        self._body_started, self._body_received = self.loop.time(), 0
        self._disarm_body_timer()
        self._body_timer = self.loop.call_later(min(BODY_CHECK_INTERVAL, BODY_TIMEOUT), self._check_body)

    def on_body(self, body: bytes) -> None:
        self._body_received += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm_body_timer()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        # Answered: whatever of the body is still coming is uvicorn's to discard, under the head timer.
        self._disarm_body_timer()
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_timer()  # the next head must come in time too (uvicorn's keep-alive timer is shorter)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request httptools cannot parse (or a callback above refused): the project's JSON
        400 naming the problem, instead of uvicorn's plain text."""
        if self._too_large:
            self._refuse_head()
            return
        problem = self._bad_request or (
            "malformed HTTP/1.1 request (RFC 9112): the request line, a header field or the body framing "
            "(Content-Length, Transfer-Encoding) cannot be parsed"
        )
        self._bad_request = None
        self._disarm_head_timer()
        self._disarm_body_timer()
        self.transport.write(_refusal(b"400 Bad Request", problem))
        self.transport.close()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEADER_BYTES or self._head_fields > MAX_HEADERS:
            self._too_large = True
            raise _HeadTooLarge

    def _refuse_head(self) -> None:
        log.warning(
            "refused a request head from %s: over MAX_HEADER_BYTES=%d or MAX_HEADERS=%d",
            self.client[0] if self.client else "?",
            MAX_HEADER_BYTES,
            MAX_HEADERS,
        )
        self._disarm_head_timer()
        self.transport.write(_HEAD_TOO_LARGE)
        self.transport.close()

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(HEADER_TIMEOUT, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def _disarm_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _check_body(self) -> None:
        """Every BODY_CHECK_INTERVAL while a body is coming: end it when it is too slow or too late."""
        self._body_timer = None
        if self.transport.is_closing():
            return
        elapsed = self.loop.time() - self._body_started
        setting = None
        if elapsed >= BODY_TIMEOUT:
            setting = f"BODY_TIMEOUT={BODY_TIMEOUT:g}s"
            problem = f"the request body did not arrive within {BODY_TIMEOUT:g} seconds (BODY_TIMEOUT)"
        elif (
            BODY_MIN_RATE
            and elapsed >= RATE_GRACE
            # Reading paused by uvicorn (the app has not read what came) is not the client's slowness.
            and not self.flow.read_paused
            and self._body_received < BODY_MIN_RATE * elapsed
        ):
            setting = f"BODY_MIN_RATE={BODY_MIN_RATE} bytes/s"
            problem = f"the request body arrives slower than {BODY_MIN_RATE} bytes a second (BODY_MIN_RATE)"
        if setting is None:
            self._body_timer = self.loop.call_later(BODY_CHECK_INTERVAL, self._check_body)
            return
        log.warning(
            "ended a request body from %s after %.1fs and %d bytes: over %s",
            self.client[0] if self.client else "?",
            elapsed,
            self._body_received,
            setting,
        )
        if not self.cycle.response_started:
            self.transport.write(_refusal(b"408 Request Timeout", problem))
        self.transport.close()


class EndAtShutdown:
    """ASGI middleware: a request still running when the graceful shutdown's deadline passes is cancelled by
    uvicorn; answer it 503 if nothing was sent yet and log one line, instead of uvicorn's CancelledError
    traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except asyncio.CancelledError:
            log.warning(
                "%s %s still running at the end of the graceful shutdown "
                "(UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN=%ds): ended",
                scope["method"],
                scope["path"],
                shutdown_timeout(),
            )
            if not started:
                body = b'{"error": "the service is shutting down"}'
                headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                try:
                    await send({"type": "http.response.start", "status": 503, "headers": headers})
                    await send({"type": "http.response.body", "body": body})
                except Exception:  # noqa: S110 - the client may be gone: nothing more to tell it
                    pass
