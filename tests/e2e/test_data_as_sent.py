"""first forwards the POST body's bytes unchanged as the event data; in structured mode it refuses with 413 what
would be over the broker's limit once encoded; a broker that resets connections is a 503 with the event and
trace ids, never a 500. The broker here is a recording peer, so the bytes on the wire are what is checked."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator

import httpx
import pytest

from tests.faults.launch import running_together
from tests.faults.peers import RESET, Peer, Script
from tools.stack import Service

INGRESS = "/default/default"
RESETTING = "/resetting/default"
LIMIT = 8192

# Bodies a JSON parser would change on the way: a number beyond float, digits beyond float precision, a
# repeated key, nesting deeper than Python's recursion limit, insignificant whitespace.
BODIES = {
    "beyond float": b'{"n": 1e400}',
    "beyond precision": b'{"n": 1.0000000000000001}',
    "repeated key": b'{"a": 1, "a": 2}',
    "deep nesting": b"[" * 1500 + b"]" * 1500,
    "whitespace": b'{ "a" :\n [1 , 2] }',
}


@pytest.fixture(scope="module")
def broker() -> Iterator[Peer]:
    with Peer({INGRESS: Script(202), RESETTING: Script(RESET)}) as peer:
        yield peer


@pytest.fixture(scope="module")
def firsts(broker: Peer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Service]]:
    quiet = {"OTEL_TRACES_EXPORTER": "none", "MAX_EVENT_BYTES": str(LIMIT)}
    specs = {
        "binary": ("first", {**quiet, "K_SINK": broker.url + INGRESS}),
        "structured": ("first", {**quiet, "K_SINK": broker.url + INGRESS, "EVENT_MODE": "structured"}),
        "resetting": ("first", {**quiet, "K_SINK": broker.url + RESETTING}),
    }
    with running_together(specs, tmp_path_factory.mktemp("data-as-sent")) as services:
        yield services


def _arrived(broker: Peer, event_id: str) -> bytes:
    [arrival] = [a for a in broker.at(INGRESS) if a.headers.get("ce-id") == event_id or event_id.encode() in a.body]
    return arrival.body


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_binary_mode_forwards_the_body_bytes_unchanged(firsts: dict[str, Service], broker: Peer, body: bytes) -> None:
    reply = httpx.post(firsts["binary"].url + "/", content=body, headers={"content-type": "application/json"})
    assert reply.status_code == 200, reply.text
    assert _arrived(broker, reply.json()["event_id"]) == body


def test_a_cloudevent_posted_as_the_body_is_sent_structured_so_it_stays_data(
    firsts: dict[str, Service], broker: Peer
) -> None:
    inner = json.dumps({"specversion": "1.0", "id": "inner", "source": "caller", "type": "x"}).encode()
    reply = httpx.post(
        firsts["binary"].url + "/", content=inner, headers={"content-type": "application/cloudevents+json"}
    )
    assert reply.status_code == 200, reply.text
    sent = json.loads(_arrived(broker, reply.json()["event_id"]))
    assert sent["type"] == "dev.knative.tracing.hello" and sent["datacontenttype"] == "application/cloudevents+json"
    assert base64.b64decode(sent["data_base64"]) == inner


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_structured_mode_carries_the_same_bytes(firsts: dict[str, Service], broker: Peer, body: bytes) -> None:
    reply = httpx.post(firsts["structured"].url + "/", content=body, headers={"content-type": "application/json"})
    assert reply.status_code == 200, reply.text
    sent = _arrived(broker, reply.json()["event_id"])
    # Inline JSON text when Python's parser can check it, base64 otherwise: either way the same bytes.
    if b'"data_base64":' in sent:
        assert base64.b64decode(json.loads(sent)["data_base64"]) == body
    else:
        assert sent.endswith(b',"data":' + body + b"}")


def test_structured_mode_refuses_at_first_what_the_broker_would_refuse(
    firsts: dict[str, Service], broker: Peer
) -> None:
    before = len(broker.at(INGRESS))
    # Under first's limit as a POST body, over it once base64-encoded inside the structured event.
    reply = httpx.post(firsts["structured"].url + "/", content=b"\x00" * (LIMIT - 100))
    assert reply.status_code == 413, reply.text
    body = reply.json()
    assert "once encoded in structured mode" in body["error"] and "MAX_EVENT_BYTES" in body["error"]
    assert body["event_id"] and body["trace_id"]
    assert len(broker.at(INGRESS)) == before  # never sent
    fits = httpx.post(firsts["binary"].url + "/", content=b"\x00" * (LIMIT - 100))
    assert fits.status_code == 200, fits.text


async def _many(url: str, count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30) as client:
        return await asyncio.gather(*(client.get(url) for _ in range(count)))


def test_a_broker_resetting_connections_is_a_503_with_ids_never_a_500(firsts: dict[str, Service]) -> None:
    replies = asyncio.run(_many(firsts["resetting"].url + "/", 60))
    assert {r.status_code for r in replies} <= {502, 503, 504}, [r.text for r in replies if r.status_code < 502]
    for reply in replies:
        body = reply.json()
        assert body["event_id"] and body["trace_id"] and "broker at" in body["error"]
    assert "Traceback" not in firsts["resetting"].log()
