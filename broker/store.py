"""The broker's store: every event it acknowledges is written here before the 202, and removed once it is
delivered or dead-lettered, so a broker killed (SIGKILL, a crash, an out-of-memory kill) or restarted delivers on
start what it had accepted. Knative's brokers keep accepted events in a durable channel (Kafka, RabbitMQ); this
is the local stand-in's, an embedded SQLite database (the standard library's sqlite3), one row per delivery
(event and Trigger), the event kept as it will be sent (headers and body).

Bounded in bytes: the events held (their headers and bodies) may take at most BROKER_STORE_MAX_BYTES (default
64 MiB); beyond it the ingress refuses new events with 503 and never drops an acknowledged one. BROKER_STORE sets
the file (default `broker-store.sqlite3` beside DEAD_LETTER_FILE). One broker a store: a second broker started on
the same file stops at start-up, naming it, since both would deliver the same events.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from plugins.settings import env_int, env_str, fail_startup

DEFAULT_NAME = "broker-store.sqlite3"
MAX_BYTES_DEFAULT = 64 * 1024 * 1024


class StoreFull(Exception):
    """The store holds BROKER_STORE_MAX_BYTES already (or the disk is full): the event is refused, not lost."""


@dataclass(frozen=True)
class Stored:
    """One delivery the broker owes: `trigger` is the Trigger's name, `context` the ingress span's trace
    context (W3C headers), `headers` and `body` the event as it will be sent."""

    row: int
    trigger: str
    context: dict[str, str]
    headers: dict[str, str]
    body: bytes


class EventStore:
    """The SQLite file, used from worker threads one statement at a time (one connection, one lock)."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._owner: IO[bytes] = (path.parent / f"{path.name}.lock").open("wb")
        try:
            fcntl.flock(self._owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fail_startup(f"BROKER_STORE={str(path)!r} is in use by another broker; give each broker its own")
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        # WAL: a commit appends to the log; synchronous=FULL: fsync before the commit returns, so what was
        # acknowledged survives a power cut too, not only a killed process.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        # SQLite's page cache in bytes, not its default 2,000 pages: the store holds only what is owed, read back
        # at start, and every byte the broker holds counts against the 64 MB it is measured by (docs/bench.md).
        self._db.execute("PRAGMA cache_size=-256")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS pending (row INTEGER PRIMARY KEY AUTOINCREMENT, trigger TEXT NOT NULL,"
            " context TEXT NOT NULL, headers TEXT NOT NULL, body BLOB NOT NULL, size INTEGER NOT NULL)"
        )
        self.bytes_held: int = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM pending").fetchone()[0]

    @classmethod
    def from_env(cls, dead_letter_file: Path) -> EventStore:
        default = dead_letter_file.parent / DEFAULT_NAME
        path = Path(env_str("BROKER_STORE", str(default))).absolute()
        max_bytes = env_int("BROKER_STORE_MAX_BYTES", MAX_BYTES_DEFAULT, minimum=1024)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return cls(path, max_bytes)
        except (OSError, sqlite3.Error) as exc:
            fail_startup(f"BROKER_STORE={str(path)!r} cannot be used: {exc}")

    async def add(
        self, triggers: list[str], context: Mapping[str, str], headers: Mapping[str, str], body: bytes
    ) -> list[int]:
        """Keep one delivery per Trigger, durably, before the caller acknowledges; their row numbers."""
        return await asyncio.to_thread(self._add, triggers, json.dumps(dict(context)), json.dumps(dict(headers)), body)

    def _add(self, triggers: list[str], context: str, headers: str, body: bytes) -> list[int]:
        size = len(headers) + len(body)
        with self._lock:
            if self.bytes_held + size * len(triggers) > self.max_bytes:
                raise StoreFull(
                    f"the broker holds {self.bytes_held} bytes of events not yet delivered; "
                    f"the limit is BROKER_STORE_MAX_BYTES={self.max_bytes}"
                )
            try:
                self._db.execute("BEGIN IMMEDIATE")
                rows = [
                    self._db.execute(
                        "INSERT INTO pending (trigger, context, headers, body, size) VALUES (?, ?, ?, ?, ?)",
                        (trigger, context, headers, body, size),
                    ).lastrowid
                    for trigger in triggers
                ]
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreFull(f"the broker's store cannot take the event: {exc}") from None
            self.bytes_held += size * len(triggers)
        return [row for row in rows if row is not None]

    async def remove(self, row: int) -> None:
        """Forget a delivery that is over (delivered or dead-lettered). Should this fail, the event is delivered
        again at the next start: a duplicate, which second recognises, never a loss."""
        await asyncio.to_thread(self._remove, row)

    def _remove(self, row: int) -> None:
        with self._lock:
            found = self._db.execute("SELECT size FROM pending WHERE row = ?", (row,)).fetchone()
            self._db.execute("DELETE FROM pending WHERE row = ?", (row,))
            if found:
                self.bytes_held -= found[0]

    def pending(self) -> list[Stored]:
        """Every delivery still owed, oldest first (at start-up, before any new event)."""
        with self._lock:
            rows = self._db.execute("SELECT row, trigger, context, headers, body FROM pending ORDER BY row").fetchall()
        return [Stored(row, trigger, json.loads(ctx), json.loads(hdrs), body) for row, trigger, ctx, hdrs, body in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._owner.close()
