"""Recognising redeliveries: brokers deliver at least once, so the same event can arrive twice.

The spec lets a consumer treat events with the same `source` and `id` as duplicates. second remembers the
events it processed for `DEDUPE_WINDOW` seconds (default 600; 0 turns detection off) and at most
`DEDUPE_MAX_EVENTS` of them (default 10000; the oldest are forgotten first), so memory stays bounded however
many events arrive and however long their ids are: each is kept as a 32-byte digest.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from cloudevents.core.base import BaseCloudEvent

N = TypeVar("N", int, float)


def _key(event: BaseCloudEvent) -> bytes:
    # A CloudEvents string cannot hold U+0000, so it separates source from id without ambiguity.
    return hashlib.sha256(f"{event.get_source()}\0{event.get_id()}".encode("utf-8", "surrogatepass")).digest()


def _setting(name: str, default: str, kind: type[N], minimum: N) -> N:
    """The setting, or a stop at start-up naming it (exit status 2, as for a bad command-line option)."""
    raw = os.environ.get(name, default)
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        what = f"a {'whole ' if kind is int else ''}number >= {minimum}"
        sys.stderr.write(f"error: {name}={raw!r} is not {what}\n")
        raise SystemExit(2)
    return value


@dataclass
class Redeliveries:
    """The events processed recently, oldest first, each with the time it was first processed."""

    window: float
    """Seconds an event is remembered; 0 remembers nothing."""
    capacity: int
    """The most events remembered at once."""
    clock: Callable[[], float] = time.monotonic
    _seen: OrderedDict[bytes, float] = field(default_factory=OrderedDict, init=False, repr=False)

    @classmethod
    def from_env(cls) -> Redeliveries:
        return cls(
            window=_setting("DEDUPE_WINDOW", "600", float, 0.0),
            capacity=_setting("DEDUPE_MAX_EVENTS", "10000", int, 1),
        )

    def age(self, event: BaseCloudEvent) -> float | None:
        """Seconds since this event (same source and id) was processed, or None when it was not, recently."""
        self._expire()
        first = self._seen.get(_key(event))
        return None if first is None else self.clock() - first

    def remember(self, event: BaseCloudEvent) -> None:
        """Record that `event` was processed; call it only once it has been, so a failure can be retried."""
        if self.window <= 0:
            return
        key = _key(event)
        if key not in self._seen:
            self._seen[key] = self.clock()
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)

    def __len__(self) -> int:
        self._expire()
        return len(self._seen)

    def _expire(self) -> None:
        # Entries are in time order, so the expired ones are all at the front.
        horizon = self.clock() - self.window
        while self._seen:
            key, first = next(iter(self._seen.items()))
            if first > horizon:
                break
            del self._seen[key]
