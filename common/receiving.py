"""Reading a CloudEvent from a request, the same way in second and the broker ingress."""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.responses import JSONResponse

from common import cloudevent
from common.settings import env_int

log = logging.getLogger(__name__)

MAX_EVENT_BYTES = env_int("MAX_EVENT_BYTES", 1024 * 1024, minimum=1)
"""Bodies above this get 413 (Knative's broker ingress and most HTTP proxies limit bodies too)."""


class Rejected(Exception):
    """The request does not carry an acceptable event; `response` says why."""

    def __init__(self, response: JSONResponse) -> None:
        super().__init__(response.body)
        self.response = response


def problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def read_event(request: Request) -> cloudevent.Event:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_EVENT_BYTES:
        raise Rejected(problem(413, f"event of {declared} bytes is over the {MAX_EVENT_BYTES}-byte limit"))
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_EVENT_BYTES:
            raise Rejected(problem(413, f"event is over the {MAX_EVENT_BYTES}-byte limit"))
    try:
        return cloudevent.parse(request.headers, bytes(body))
    except cloudevent.EventError as exc:
        log.warning("rejected event: %s", exc.message)
        raise Rejected(problem(exc.status, exc.message)) from None
