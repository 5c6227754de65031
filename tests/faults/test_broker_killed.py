"""The broker killed (SIGKILL) under load and started again: every event it acknowledged (202) is delivered to
second or kept in the dead-letter file, because it was in the broker's store (broker/store.py) before the 202.
And the store's bound: at BROKER_STORE_MAX_BYTES new events get 503, and none acknowledged is dropped.

second is frozen (SIGSTOP) while the load runs, so the broker holds many deliveries when it dies, as it would
with a slow subscriber; it is thawed once the broker is gone."""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support import cloudevent_headers, poll_until
from tools.stack import ROOT, Service, free_port, start_service, stop, wait_all_healthy

EVENTS = 400
CONCURRENCY = 16
KILL_AFTER = 150
"""The broker is killed once this many events were acknowledged, with the load still going."""


@contextmanager
def started(name: str, env: dict[str, str], log: Path, port: int | None = None) -> Iterator[Service]:
    service = start_service(name, port or free_port(), {"OTEL_TRACES_EXPORTER": "none", **env}, log)
    try:
        wait_all_healthy([service])
        yield service
    finally:
        if service.process.poll() is None:
            os.kill(service.process.pid, signal.SIGCONT)
        stop(service)


def broker_env(tmp_path: Path, second: Service, **extra: str) -> dict[str, str]:
    return {
        "BROKER_CONFIG": str(ROOT / "config"),
        "BROKER_SUBSCRIBERS": f"second={second.url}",
        "DEAD_LETTER_FILE": str(tmp_path / "dead-letters.jsonl"),
        "BROKER_STORE": str(tmp_path / "store.sqlite3"),
        "DELIVERY_TIMEOUT": "2",
        **extra,
    }


def accounted(second: Service, dead_letters: Path) -> set[str]:
    processed = set(re.findall(r"processed event (\S+),", second.log()))
    duplicates = set(re.findall(r"duplicate event (\S+) ", second.log()))
    kept = set()
    if dead_letters.exists():
        kept = {json.loads(line)["event"]["id"] for line in dead_letters.read_text().splitlines()}
    return processed | duplicates | kept


def test_every_acknowledged_event_survives_a_sigkill_of_the_broker(tmp_path: Path) -> None:
    with started("second", {}, tmp_path / "second.log") as second:
        env = broker_env(tmp_path, second)
        acknowledged: list[str] = []
        with started("broker", env, tmp_path / "broker-1.log") as broker:
            os.kill(second.process.pid, signal.SIGSTOP)

            def send(number: int) -> None:
                headers = cloudevent_headers()
                try:
                    reply = httpx.post(broker.url + "/default/default", headers=headers, content=b"x", timeout=10)
                except httpx.HTTPError:
                    return  # the broker is gone: not acknowledged
                if reply.status_code == 202:
                    acknowledged.append(headers["ce-id"])
                    if len(acknowledged) == KILL_AFTER:
                        broker.process.kill()

            with ThreadPoolExecutor(CONCURRENCY) as pool:
                list(pool.map(send, range(EVENTS)))
            assert broker.process.wait(10) == -signal.SIGKILL
        os.kill(second.process.pid, signal.SIGCONT)
        assert len(acknowledged) >= KILL_AFTER
        with started("broker", env, tmp_path / "broker-2.log") as restarted:
            missing = poll_until(
                lambda: not (set(acknowledged) - accounted(second, tmp_path / "dead-letters.jsonl")) or None,
                60,
                f"each of the {len(acknowledged)} acknowledged events to be delivered or dead-lettered",
            )
            assert missing
            replayed = re.search(r"delivering (\d+) events accepted before this start", restarted.log())
        assert replayed, restarted.log()
    # Counted: the restarted broker delivered what the killed one owed; every acknowledged event is accounted.
    lost = set(acknowledged) - accounted(second, tmp_path / "dead-letters.jsonl")
    assert not lost, f"{len(lost)} of {len(acknowledged)} acknowledged events neither delivered nor dead-lettered"
    assert int(replayed.group(1)) > 0
    assert "LOST" not in restarted.log()


def test_a_full_store_refuses_new_events_with_a_503_and_keeps_the_acknowledged(tmp_path: Path) -> None:
    with started("second", {}, tmp_path / "second.log") as second:
        env = broker_env(tmp_path, second, BROKER_STORE_MAX_BYTES="20000", DELIVERY_TIMEOUT="30")
        with started("broker", env, tmp_path / "broker.log") as broker:
            os.kill(second.process.pid, signal.SIGSTOP)
            acknowledged: list[str] = []
            refusal = None
            for _ in range(100):
                headers = cloudevent_headers()
                reply = httpx.post(broker.url + "/default/default", headers=headers, content=b"x" * 1000, timeout=10)
                if reply.status_code != 202:
                    refusal = reply
                    break
                acknowledged.append(headers["ce-id"])
            assert refusal is not None and refusal.status_code == 503, refusal
            assert "BROKER_STORE_MAX_BYTES=20000" in refusal.json()["error"]
            assert 5 <= len(acknowledged) < 20, len(acknowledged)
            os.kill(second.process.pid, signal.SIGCONT)
            poll_until(
                lambda: set(acknowledged) <= accounted(second, tmp_path / "dead-letters.jsonl"),
                30,
                "the acknowledged events to be delivered once second is back",
            )
            # Delivered events leave the store: there is room again.
            headers = cloudevent_headers()
            reply = httpx.post(broker.url + "/default/default", headers=headers, content=b"x" * 1000, timeout=10)
            assert reply.status_code == 202, reply.text


def test_an_event_whose_trigger_is_gone_at_the_restart_goes_to_the_dead_letter_file(tmp_path: Path) -> None:
    renamed = tmp_path / "manifests.yaml"
    trigger = (ROOT / "config" / "trigger.yaml").read_text().replace("name: first-to-second", "name: renamed")
    renamed.write_text((ROOT / "config" / "broker.yaml").read_text() + "\n---\n" + trigger)
    with started("second", {}, tmp_path / "second.log") as second:
        env = broker_env(tmp_path, second, DELIVERY_TIMEOUT="30")
        os.kill(second.process.pid, signal.SIGSTOP)
        sent = [cloudevent_headers() for _ in range(3)]
        with started("broker", env, tmp_path / "broker-1.log") as broker:
            for headers in sent:
                assert httpx.post(broker.url + "/default/default", headers=headers, content=b"x").status_code == 202
            broker.process.kill()
        os.kill(second.process.pid, signal.SIGCONT)
        with started("broker", {**env, "BROKER_CONFIG": str(renamed)}, tmp_path / "broker-2.log") as restarted:
            dead_letters = tmp_path / "dead-letters.jsonl"
            poll_until(
                lambda: dead_letters.exists() and len(dead_letters.read_text().splitlines()) >= len(sent),
                20,
                "the events of the vanished Trigger in the dead-letter file",
            )
            log = restarted.log()
    records = [json.loads(line) for line in dead_letters.read_text().splitlines()]
    assert {r["event"]["id"] for r in records} == {h["ce-id"] for h in sent}
    assert all("'first-to-second' is no longer in the manifests" in r["reason"] for r in records)
    assert "LOST" not in log
