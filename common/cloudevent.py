"""CloudEvents 1.0 over HTTP: parse and validate what arrives, encode what leaves.

The cloudevents SDK builds and encodes events well, but its parser fills in a missing `id` and `specversion`
and does not check attribute types, so incoming events are validated here against the spec's rules
(CloudEvents 1.0 and its HTTP protocol binding, binary and structured content modes).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

from cloudevents.core.bindings.http import to_binary_event, to_structured_event
from cloudevents.core.v1.event import CloudEvent

SPECVERSION: Final = "1.0"
STRUCTURED_JSON: Final = "application/cloudevents+json"
REQUIRED: Final = ("id", "source", "specversion", "type")
OPTIONAL: Final = ("datacontenttype", "dataschema", "subject", "time")
_ATTRIBUTE_NAME = re.compile(r"^[a-z0-9]{1,20}$")
# RFC 3339 date-time, the only timestamp form the spec allows.
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Characters the HTTP binding requires to be percent-encoded in header values (3.1.3.2).
_HEADER_SAFE: Final = "".join(c for c in map(chr, range(0x21, 0x7F)) if c not in ' "%')
_PERCENT = re.compile(rb"%([0-9A-Fa-f]{2})")


class EventError(Exception):
    """A client mistake in an incoming event: `status` is the HTTP answer, the message names the problem."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Event:
    """A validated CloudEvent: context attributes (extensions included) and the data as bytes on the wire."""

    attributes: dict[str, str | int | bool]
    data: bytes = b""
    mode: str = "binary"

    @property
    def id(self) -> str:
        return str(self.attributes["id"])

    @property
    def source(self) -> str:
        return str(self.attributes["source"])

    @property
    def type(self) -> str:
        return str(self.attributes["type"])

    @property
    def subject(self) -> str | None:
        value = self.attributes.get("subject")
        return None if value is None else str(value)

    def with_attribute(self, name: str, value: str) -> Event:
        return Event({**self.attributes, name: value}, self.data, self.mode)


def _check_attribute(name: str, value: object) -> str | int | bool:
    if not _ATTRIBUTE_NAME.match(name):
        raise EventError(f"attribute name {name!r} must be 1-20 lowercase letters or digits")
    if name in REQUIRED or name in OPTIONAL:
        if not isinstance(value, str):
            raise EventError(f"attribute {name!r} must be a string, got {type(value).__name__}")
    elif isinstance(value, bool | int):
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**31) <= value < 2**31:
            raise EventError(f"extension {name!r} is outside the 32-bit integer range")
        return value
    elif not isinstance(value, str):
        raise EventError(f"extension {name!r} must be a string, integer or boolean, got {type(value).__name__}")
    if _CONTROL.search(value):
        raise EventError(f"attribute {name!r} contains a control character")
    return value


def _validate(attributes: dict[str, Any]) -> dict[str, str | int | bool]:
    checked = {name: _check_attribute(name, value) for name, value in attributes.items()}
    for name in REQUIRED:
        if name not in checked:
            raise EventError(f"required attribute {name!r} is missing")
        if checked[name] == "":
            raise EventError(f"required attribute {name!r} is empty")
    if checked["specversion"] != SPECVERSION:
        raise EventError(f"specversion {checked['specversion']!r} is not supported; this receiver speaks 1.0")
    time = checked.get("time")
    if time is not None and not (isinstance(time, str) and _valid_time(time)):
        raise EventError(f"attribute 'time' {time!r} is not an RFC 3339 timestamp")
    schema = checked.get("dataschema")
    if schema is not None and not _URI_SCHEME.match(str(schema)):
        raise EventError(f"attribute 'dataschema' {schema!r} must be an absolute URI")
    if checked.get("datacontenttype") == "":
        raise EventError("attribute 'datacontenttype' is empty")
    if checked.get("subject") == "":
        raise EventError("attribute 'subject' is empty")
    return checked


def _valid_time(value: str) -> bool:
    if not _RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00").replace("t", "T"))
    except ValueError:
        return False
    return True


def _percent_decode(name: str, raw: str) -> str:
    """Decode a header value per the HTTP binding: %XX escapes, and the result must be valid UTF-8."""
    encoded = raw.strip(" \t").encode("latin-1", errors="replace")
    try:
        return _PERCENT.sub(lambda m: bytes([int(m.group(1), 16)]), encoded).decode("utf-8")
    except UnicodeDecodeError:
        raise EventError(f"header {name!r} is not valid UTF-8 after percent-decoding") from None


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse(headers: Mapping[str, str], body: bytes) -> Event:
    """Read a CloudEvent from an HTTP request in either content mode, or raise EventError."""
    media = _media_type(headers.get("content-type"))
    if media.startswith("application/cloudevents"):
        if media != STRUCTURED_JSON:
            raise EventError(f"structured format {media!r} is not supported; use {STRUCTURED_JSON}", 415)
        return _parse_structured(body)
    if media == "application/cloudevents-batch+json":
        raise EventError("batched CloudEvents are not supported; send one event a request", 415)
    return _parse_binary(headers, body)


def _parse_binary(headers: Mapping[str, str], body: bytes) -> Event:
    attributes: dict[str, Any] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith("ce-"):
            attributes[lower[3:]] = _percent_decode(lower, value)
    if not attributes:
        raise EventError(
            "no CloudEvent found: send binary mode (ce-id, ce-source, ce-specversion, ce-type headers) "
            f"or structured mode (Content-Type: {STRUCTURED_JSON})"
        )
    content_type = headers.get("content-type")
    if content_type is not None and content_type.strip():
        attributes["datacontenttype"] = content_type.strip()
    return Event(_validate(attributes), body, "binary")


def _parse_structured(body: bytes) -> Event:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventError(f"structured body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise EventError(f"structured body must be a JSON object, got {type(document).__name__}")
    if "data" in document and "data_base64" in document:
        raise EventError("structured event has both 'data' and 'data_base64'")
    data = b""
    if "data_base64" in document:
        encoded = document.pop("data_base64")
        if not isinstance(encoded, str):
            raise EventError("'data_base64' must be a string")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise EventError("'data_base64' is not valid base64") from None
    elif "data" in document:
        value = document.pop("data")
        media = _media_type(document.get("datacontenttype") or "application/json")
        if isinstance(value, str) and not _is_json(media):
            data = value.encode()
        else:
            data = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    if "datacontenttype" not in document and data:
        document["datacontenttype"] = "application/json"
    return Event(_validate(document), data, "structured")


def _is_json(media: str) -> bool:
    return media == "application/json" or media.endswith("+json") or media == "text/json"


def to_http(event: Event, mode: str) -> tuple[dict[str, str], bytes]:
    """Headers and body that carry `event` in `mode` ("binary" or "structured"), data bytes unchanged."""
    if mode == "structured":
        document: dict[str, Any] = dict(event.attributes)
        media = _media_type(str(event.attributes.get("datacontenttype", "")))
        if event.data and _is_json(media):
            document["data"] = json.loads(event.data)
        elif event.data and media.startswith("text/"):
            document["data"] = event.data.decode()
        elif event.data:
            document["data_base64"] = base64.b64encode(event.data).decode()
        body = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
        return {"content-type": STRUCTURED_JSON}, body
    headers = {
        f"ce-{name}": quote(str(value).lower() if isinstance(value, bool) else str(value), safe=_HEADER_SAFE)
        for name, value in event.attributes.items()
        if name != "datacontenttype"
    }
    if "datacontenttype" in event.attributes:
        headers["content-type"] = str(event.attributes["datacontenttype"])
    return headers, event.data


def build(attributes: dict[str, Any], data: Any, mode: str) -> tuple[Event, dict[str, str], bytes]:
    """Build a CloudEvent 1.0 with the SDK (it fills id, time and specversion) and encode it in `mode`.

    The encoded message is read back through `parse`, so what first sends passes the same checks as what
    second receives.
    """
    sdk_event = CloudEvent(attributes=attributes, data=data)
    message = to_structured_event(sdk_event) if mode == "structured" else to_binary_event(sdk_event)
    headers = {name.lower(): value for name, value in message.headers.items()}
    return parse(headers, message.body), headers, message.body


def describe(event: Event) -> str:
    """The article's log block: "Event received: Context Attributes, ..." then extensions, then data."""
    lines = ["Event received: Context Attributes,"]
    standard = (*REQUIRED, *OPTIONAL)
    for name in ("specversion", "type", "source", "subject", "id", "time", "dataschema", "datacontenttype"):
        if name in event.attributes:
            lines.append(f"  {name}: {event.attributes[name]}")
    extensions = sorted(name for name in event.attributes if name not in standard)
    if extensions:
        lines.append("Extensions,")
        lines.extend(f"  {name}: {event.attributes[name]}" for name in extensions)
    if event.data:
        lines.append("Data,")
        lines.append(f"  {event.data.decode('utf-8', errors='replace')}")
    return "\n".join(lines)
