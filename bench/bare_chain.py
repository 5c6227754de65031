"""The floor: one hop of a bare chain of raw-ASGI uvicorn processes, the least this server stack can do.

No framework, no CloudEvents, no logging, no telemetry. Each hop answers `GET|POST /` after one POST of the
body to `BARE_NEXT` over one shared keep-alive httpx client (the client the services use). With
`BARE_BACKGROUND=true` a hop answers 202 first and posts in the background (at most 16 at once), as the
broker does; the last hop (no `BARE_NEXT`) just answers. `GET /healthz` answers 200 so the bench starts it
like a service.

Run: `PORT=9001 BARE_NEXT=http://127.0.0.1:9002/ python -m bench.bare_chain`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx
import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

NEXT = os.environ.get("BARE_NEXT", "")
BACKGROUND = os.environ.get("BARE_BACKGROUND", "").lower() == "true"
_client: httpx.AsyncClient | None = None
# The broker's bound on posts under way (broker.delivery.MAX_POSTS_IN_FLIGHT), so the floor gets the same fix.
_slots = asyncio.Semaphore(16)
_tasks: set[asyncio.Task[None]] = set()


async def _forward(body: bytes) -> int:
    assert _client is not None
    reply = await _client.post(NEXT, content=body)
    return reply.status_code


async def _forward_in_background(body: bytes) -> None:
    async with _slots:
        await _forward(body)


async def _read_body(receive: Receive) -> bytes:
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


async def _answer(send: Send, status: int) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


async def _lifespan(receive: Receive, send: Send) -> None:
    global _client  # noqa: PLW0603 - one client for the life of the process, like the services
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            _client = httpx.AsyncClient(timeout=5.0)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if _tasks:
                await asyncio.wait(set(_tasks), timeout=5.0)
            if _client is not None:
                await _client.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    body = await _read_body(receive)
    if scope["path"] == "/healthz" or not NEXT:
        await _answer(send, 200)
        return
    if BACKGROUND:
        task = asyncio.create_task(_forward_in_background(body))
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)
        await _answer(send, 202)
        return
    status = await _forward(body)
    await _answer(send, 200 if status < 300 else 502)


def main() -> None:
    # The same server settings as plugins.server.serve, so the floor differs from the demo only in the app.
    uvicorn.run(
        app,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "9000")),
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        lifespan="on",
    )


if __name__ == "__main__":
    main()
