"""The dead-letter file: where the local broker keeps every event it gives up delivering, so none is lost.

One JSON object a line (JSON Lines), appended and flushed to disk (fsync) before the outcome is logged:

    {"time": "...Z", "reason": "...", "trigger": "first-to-second", "subscriber": "http://...",
     "trace_id": "...", "event": {<the event in the CloudEvents JSON format, data as sent>}}

`event` is the structured-mode CloudEvent, so a line can be replayed as it is
(`jq -c .event dead-letters.jsonl | while read e; do curl -H 'content-type: application/cloudevents+json' -d "$e" ...`).
DEAD_LETTER_FILE sets the path (default `dead-letters.jsonl` in the working directory, the clone for `make run`).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from plugins import cloudevents
from plugins.settings import env_str, fail_startup

DEFAULT_PATH = "dead-letters.jsonl"


@dataclass
class DeadLetterFile:
    path: Path
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @classmethod
    def from_env(cls) -> DeadLetterFile:
        """The file DEAD_LETTER_FILE names, checked writable now rather than at the first dead letter."""
        path = Path(env_str("DEAD_LETTER_FILE", DEFAULT_PATH)).absolute()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("ab"):
                pass
        except OSError as exc:
            fail_startup(f"DEAD_LETTER_FILE={str(path)!r} cannot be written: {exc.strerror or exc}")
        return cls(path)

    async def keep(
        self, event: cloudevents.Event, reason: str, trigger: str, subscriber: str, trace_id: str | None
    ) -> None:
        """Append `event` with why it was given up; raises OSError when it cannot be kept."""
        _, body = cloudevents.to_http(event, "structured")
        record = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "reason": reason,
            "trigger": trigger,
            "subscriber": subscriber,
            "trace_id": trace_id,
        }
        # The event's JSON goes in as encoded, so data that is JSON text stays byte for byte what was sent.
        line = json.dumps(record, ensure_ascii=False)[:-1].encode() + b',"event":' + body + b"}\n"
        await asyncio.to_thread(self._append, line)

    def _append(self, line: bytes) -> None:
        with self._lock, self.path.open("ab") as file:
            file.write(line)
            file.flush()
            os.fsync(file.fileno())
