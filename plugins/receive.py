"""The receiving layer every service runs with (plugins/server.py puts it in front of the app): request bodies
bounded, and, where the service receives CloudEvents (`STRICT_CLOUDEVENTS=true`, second's setting), every event
read exactly as CloudEvents 1.0 says (plugins/cloudevents.py) before the app sees it, as Knative's broker
validates events in front of its subscribers. A rejection is a 4xx whose JSON body names the problem. The broker
ingress reads its events the same way (`read_event`)."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plugins import cloudevents
from plugins.settings import env_int

log = logging.getLogger(__name__)

MAX_EVENT_BYTES = env_int("MAX_EVENT_BYTES", 1024 * 1024, minimum=1)
"""Bodies above this get 413. The spec asks every consumer to take at least 64 KiB; Knative's broker ingress
and most HTTP proxies limit bodies too. Headers are limited by the HTTP server itself (plugins/server.py)."""


class Rejected(Exception):
    """The request does not carry an acceptable event; `response` says why."""

    def __init__(self, response: JSONResponse) -> None:
        super().__init__(response.body)
        self.response = response


def problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _too_large(size: str) -> Rejected:
    message = f"event of {size} bytes is over the {MAX_EVENT_BYTES}-byte limit (MAX_EVENT_BYTES)"
    log.warning("rejected event: %s", message)
    return Rejected(problem(413, message))


async def read_event(request: Request) -> cloudevents.Event:
    """The request's event (the broker ingress), read as the receiving layer reads one."""
    return parse_event(request.headers, await read_body(request.receive, request.headers.get("content-length")))


def parse_event(headers: Headers, body: bytes) -> cloudevents.Event:
    """`body` and `headers` as a CloudEvent, strictly; a `Rejected` naming the problem otherwise."""
    try:
        event = cloudevents.parse(headers, body)
    except cloudevents.EventError as exc:
        log.warning("rejected event: %s", exc.message)
        raise Rejected(problem(exc.status, exc.message)) from None
    for leniency in event.lenient:
        log.warning("event %s accepted leniently, as Knative's broker would: %s", event.id, leniency)
    return event


async def read_body(receive: Receive, declared: str | None) -> bytes:
    """The body from ASGI messages, refused with 413 as soon as it is known to exceed MAX_EVENT_BYTES: from the
    declared Content-Length before anything is read, else while streaming, never holding more than the limit."""
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > MAX_EVENT_BYTES:
        raise _too_large(declared)
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            # Nobody is left to answer; say so in the log rather than with a traceback.
            log.warning("client disconnected before sending the whole body (%d bytes read)", len(body))
            raise Rejected(problem(400, "client disconnected before the body was complete"))
        chunk = message.get("body", b"")
        if len(body) + len(chunk) > MAX_EVENT_BYTES:
            raise _too_large(f"more than {MAX_EVENT_BYTES}")
        body += chunk
        if not message.get("more_body", False):
            return bytes(body)


def _same_host_redirects(send: Send) -> Send:
    """A redirect's Location as a path only (RFC 9110 10.2.2 allows a relative reference): Starlette builds
    an absolute one from the request's Host header (its trailing-slash redirect, `POST /dead-letter/` -> 307
    `http://<Host>/dead-letter`), which sent a client on to whatever host it named (issue 21). The client
    resolves the path against the URL it used, so the redirect still works, to this service only."""

    async def relative_location(message: Message) -> None:
        if message["type"] == "http.response.start" and 300 <= message["status"] < 400:
            headers = [
                (name, _path_only(value) if name.lower() == b"location" else value)
                for name, value in message.get("headers", [])
            ]
            message = {**message, "headers": headers}
        await send(message)

    return relative_location


def _path_only(location: bytes) -> bytes:
    """`http://host/p?q` -> `/p?q`; a scheme-relative `//host/p` too; a path stays as it is."""
    parts = urlsplit(location.decode("latin-1"))
    if not parts.scheme and not parts.netloc:
        return location
    path = "/" + parts.path.lstrip("/")  # never `//...`, which a client would read as another host
    return (path + (f"?{parts.query}" if parts.query else "")).encode("latin-1")


class ReceivingLayer:
    """ASGI middleware: bodies bounded (MAX_EVENT_BYTES), CloudEvents checked when `strict_cloudevents`."""

    def __init__(self, app: ASGIApp, strict_cloudevents: bool) -> None:
        self.app = app
        self.strict_cloudevents = strict_cloudevents

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            send = _same_host_redirects(send)
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            body = await read_body(receive, headers.get("content-length"))
            if self.strict_cloudevents:
                parse_event(headers, body)
        except Rejected as rejected:
            await rejected.response(scope, receive, send)
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
