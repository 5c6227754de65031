"""CloudEvents 1.0 over HTTP read exactly as the specification says; events encoded with their data unchanged.

The upstream gap it fills: the cloudevents SDK (2.2) creates events well (first and second use it), but its HTTP
binding
- fills in a missing `id` and `specversion` and does not check attribute types, names or formats (time,
  URI-references, media types, the String type's forbidden characters), so a malformed event would pass;
- decodes JSON data and encodes it again, changing numbers such as 1e400 and losing repeated keys, where a
  broker must forward the data as sent (docs/cloudevents.md);
- refuses what Knative's broker (sdk-go) accepts, where this module accepts it and logs it (`Event.lenient`).
So incoming events are validated here against CloudEvents 1.0, its HTTP protocol binding in binary and
structured content modes and the JSON format, into one model, `Event`, whose data is the bytes on the wire,
which the broker forwards encoded by `to_http`. Every client mistake raises
`EventError`, whose message names the attribute or header at fault. Every size is capped before it is read
(plugins/receive.py) and parsing is linear (tests/unit/test_parser_cost.py).

Delete the reading half (and read with `cloudevents.core.bindings.http`) when the SDK validates what it reads
and keeps data as bytes: when tests/unit/test_cloudevent.py passes against it.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NoReturn
from urllib.parse import quote, unquote_to_bytes

from cloudevents.core.base import BaseCloudEvent

from plugins.escaping import MASK, Block, escape

SPECVERSION: Final = "1.0"
STRUCTURED_JSON: Final = "application/cloudevents+json"
BATCH_JSON: Final = "application/cloudevents-batch+json"
REQUIRED: Final = ("id", "source", "specversion", "type")
OPTIONAL: Final = ("datacontenttype", "dataschema", "subject", "time")
_INT32: Final = range(-(2**31), 2**31)
_DESCRIBE_LIMIT: Final = 4096
"""Data longer than this is cut in the log line: a log is for people, not for megabytes of payload."""

# Attribute names: lower-case ASCII letters and digits. The spec's 20-character limit is a SHOULD NOT, so
# longer names are accepted; `data` is reserved for the event formats.
_ATTRIBUTE_NAME = re.compile(r"[a-z0-9]+", re.ASCII)
# What a CloudEvents String must not contain (spec, "Type System"): control characters, surrogates (a Python
# str only holds unpaired ones: decoding joins the valid pairs) and the Unicode noncharacters.
_NOT_IN_STRING = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef"
    + "".join(f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(17))
    + "]"
)
# RFC 3339 date-time (section 5.6); the ranges are checked in _time_problem.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:[Zz]|[+-](\d{2}):(\d{2}))", re.ASCII
)
# RFC 3986 appendix B splits any string into scheme, authority, path, query and fragment; each part's
# characters are then checked against the grammar.
_URI_PARTS = re.compile(r"(?:([^:/?#]+):)?(?://([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?", re.DOTALL)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*", re.ASCII)
_PCHAR = r"A-Za-z0-9\-._~!$&'()*+,;=:@"
_URI_PATH = re.compile(rf"(?:[{_PCHAR}/]|%[0-9A-Fa-f]{{2}})*+", re.ASCII)
_URI_QUERY = re.compile(rf"(?:[{_PCHAR}/?]|%[0-9A-Fa-f]{{2}})*+", re.ASCII)
_URI_AUTHORITY = re.compile(rf"(?:[{_PCHAR}\[\]]|%[0-9A-Fa-f]{{2}})*+", re.ASCII)
# RFC 2045/7231 media type: type "/" subtype, then parameters (tolerated: an empty one, as in "a/b;", and
# spaces around "=", which the grammar does not allow but senders write).
# Possessive quantifiers throughout: a datacontenttype can be as long as the body, and must not backtrack.
_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]++"
_MEDIA_TYPE = re.compile(
    rf'{_TCHARS}/{_TCHARS}(?:[ \t]*+;[ \t]*+(?:{_TCHARS}[ \t]*+=[ \t]*+(?:{_TCHARS}|"(?:[^"\\]|\\.)*+"))?)*+[ \t]*+',
    re.ASCII,
)
# Characters the HTTP binding lets through unencoded in header values (3.1.3.2): printable ASCII except
# space, double-quote and percent.
_HEADER_SAFE: Final = "".join(c for c in map(chr, range(0x21, 0x7F)) if c not in ' "%')
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_UTF8_NAMES: Final = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
MAX_JSON_NESTING: Final = 10_000
"""How deep JSON may nest: the limit of Go's encoding/json, which Knative's broker reads events with."""
_LONG_INTEGER: Final = 2**64
"""What an integer too long to matter stands for: Python converts at most 4300 digits (a guard against its
quadratic conversion) and Go's reader takes any number, so a longer one is read as text is, without converting
it. Only attribute values are ever converted, and an extension must fit in 32 bits: this one is refused as out
of range, and `data` is kept as its text."""


class EventError(Exception):
    """A client mistake in an incoming event: `status` is the HTTP answer, the message names the problem."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Event:
    """A validated CloudEvent: context attributes (extensions included) and the data as bytes on the wire.

    Binary mode carries every attribute as a string (HTTP headers have no types), so an integer or boolean
    extension read in binary mode is its canonical string; structured mode keeps the JSON types.
    """

    attributes: dict[str, str | int | bool]
    data: bytes = b""
    mode: str = "binary"
    lenient: tuple[str, ...] = ()
    """What was accepted although the spec says otherwise (Postel: Knative's broker accepts it too); logged."""

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

    def with_attributes(self, extra: Mapping[str, str]) -> Event:
        return Event({**self.attributes, **extra}, self.data, self.mode, self.lenient)


# ---------------------------------------------------------------------------------------------------------
# Attribute validation: names, the type system, and the formats of the core attributes.


def canonical(value: str | int | bool) -> str:
    """An attribute's canonical string form (spec "Type System"): booleans are `true`/`false`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _check_attribute(name: str, value: object) -> str | int | bool:
    if not _ATTRIBUTE_NAME.fullmatch(name):
        raise EventError(f"attribute name {name!r} must be lower-case ASCII letters and digits")
    if name == "data":
        raise EventError("'data' is reserved and cannot be an attribute name")
    if name in REQUIRED or name in OPTIONAL:
        if not isinstance(value, str):
            raise EventError(f"attribute {name!r} must be a string, got {_json_type(value)}")
    elif isinstance(value, bool):
        return value
    elif isinstance(value, int):
        if value not in _INT32:
            raise EventError(f"extension {name!r} is outside the 32-bit integer range of CloudEvents")
        return value
    elif not isinstance(value, str):
        raise EventError(f"extension {name!r} must be a string, integer or boolean, got {_json_type(value)}")
    bad = _NOT_IN_STRING.search(value)
    if bad:
        raise EventError(f"attribute {name!r} contains U+{ord(bad.group()):04X}, which a CloudEvents string cannot")
    return value


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", float: "a non-integer number", int: "a number", str: "a string"}
    if value is None:
        return "null"
    return names.get(type(value), "a boolean" if isinstance(value, bool) else type(value).__name__)


def _validate(attributes: Mapping[str, Any], lenient: list[str]) -> dict[str, str | int | bool]:
    """The attributes, checked; what Knative's broker (CloudEvents sdk-go) would accept although the spec does
    not is accepted too, and said in `lenient`: refusing it here would only send it to the dead-letter sink."""
    checked = {name: _check_attribute(name, value) for name, value in attributes.items()}
    # specversion first: an event of another version is judged by other rules, so say that before anything.
    for name in ("specversion", "id", "source", "type"):
        if name not in checked:
            raise EventError(f"required attribute {name!r} is missing")
        if checked[name] == "":
            raise EventError(f"required attribute {name!r} is empty")
        if name == "specversion" and checked[name] != SPECVERSION:
            raise EventError(f"specversion {checked[name]!r} is not supported; this receiver speaks 1.0")
    # sdk-go reads `source` with Go's url.Parse, which takes nearly any string: only an empty one is refused.
    problem = _uri_problem(str(checked["source"]), absolute=False)
    if problem:
        lenient.append(f"attribute 'source' {checked['source']!r} is not a URI-reference: {problem}")
    if "dataschema" in checked:
        # sdk-go requires a scheme (an absolute URI), not the RFC 3986 characters.
        problem = _uri_problem(str(checked["dataschema"]), absolute=True)
        if problem in {"it has no scheme", "it is empty"}:
            raise EventError(f"attribute 'dataschema' {checked['dataschema']!r} is not an absolute URI: {problem}")
        if problem:
            lenient.append(f"attribute 'dataschema' {checked['dataschema']!r} is not an absolute URI: {problem}")
    if "time" in checked:
        problem = _time_problem(str(checked["time"]))
        if problem:
            raise EventError(f"attribute 'time' {checked['time']!r} is not an RFC 3339 timestamp: {problem}")
    if "datacontenttype" in checked and not _MEDIA_TYPE.fullmatch(str(checked["datacontenttype"])):
        raise EventError(
            f"attribute 'datacontenttype' {checked['datacontenttype']!r} is not a media type such as text/plain"
        )
    if checked.get("subject") == "":
        raise EventError("attribute 'subject' is empty")
    return checked


def _uri_problem(value: str, *, absolute: bool) -> str | None:
    """Why `value` is not an RFC 3986 URI-reference (or, with `absolute`, not a URI with a scheme)."""
    if value == "":
        return "it is empty"
    parts = _URI_PARTS.fullmatch(value)
    assert parts is not None  # the appendix B expression matches every string
    scheme, authority, path, query, fragment = parts.groups()
    if scheme is not None and not _SCHEME.fullmatch(scheme):
        return f"{scheme!r} before ':' is not a scheme (percent-encode the ':' in a relative reference)"
    if absolute and scheme is None:
        return "it has no scheme"
    checks = ((authority, _URI_AUTHORITY), (path, _URI_PATH), (query, _URI_QUERY), (fragment, _URI_QUERY))
    for part, grammar in checks:
        if part is None:
            continue
        end = grammar.match(part).end()  # type: ignore[union-attr]  # `*+` matches at least the empty string
        if end < len(part):
            if part[end] == "%":
                return "a '%' that does not start a %XX escape"
            return f"{part[end]!r} must be percent-encoded"
    return None


def _time_problem(value: str) -> str | None:
    match = _RFC3339.fullmatch(value)
    if not match:
        return "expected the form 2024-01-31T23:59:59.123Z or with an offset such as +02:00"
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    offset_hour, offset_minute = (int(part or 0) for part in match.groups()[6:])
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days = (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
    if not 1 <= month <= 12 or not 1 <= day <= days[month - 1]:
        return "no such date"
    # Second 60 is a leap second, which RFC 3339 allows.
    if hour > 23 or minute > 59 or second > 60 or offset_hour > 23 or offset_minute > 59:
        return "hour, minute, second or offset out of range"
    return None


# ---------------------------------------------------------------------------------------------------------
# Reading an HTTP request.


def parse(headers: Mapping[str, str], body: bytes) -> Event:
    """Read a CloudEvent from an HTTP request in either content mode, or raise EventError.

    `headers.items()` may repeat a name (Starlette's Headers does): a repeated attribute is an error.
    """
    items = [(name.lower(), value) for name, value in headers.items()]
    content_types = [value for name, value in items if name == "content-type"]
    if len(content_types) > 1:
        raise EventError("the Content-Type header appears more than once")
    content_type = content_types[0].strip(" \t") if content_types else ""
    media, params = _split_media(content_type)
    if media.startswith(BATCH_JSON.split("+", 1)[0]):
        raise EventError(f"batched CloudEvents ({media}) are not supported; send one event a request", 415)
    if media.startswith("application/cloudevents"):
        if media != STRUCTURED_JSON:
            raise EventError(f"structured format {media!r} is not supported; use {STRUCTURED_JSON}", 415)
        charset = params.get("charset", "utf-8").lower()
        if charset not in _UTF8_NAMES:
            raise EventError(f"structured JSON must be UTF-8, not charset {charset!r}", 415)
        return _parse_structured(body)
    return _parse_binary(items, content_type, body)


def _split_media(content_type: str) -> tuple[str, dict[str, str]]:
    """The lower-cased media type and its parameters (names lower-cased, quotes removed)."""
    media, _, rest = content_type.partition(";")
    params: dict[str, str] = {}
    for param in rest.split(";"):
        name, sep, value = param.partition("=")
        if sep:
            params[name.strip().lower()] = value.strip().strip('"')
    return media.strip().lower(), params


def _parse_binary(items: list[tuple[str, str]], content_type: str, body: bytes) -> Event:
    attributes: dict[str, str] = {}
    for name, value in items:
        if name.startswith("ce-"):
            if name[3:] in attributes:
                raise EventError(f"header {name!r} appears more than once; an attribute can only have one value")
            attributes[name[3:]] = header_value(name, value)
    if not attributes:
        raise EventError(
            "no CloudEvent found: send binary mode (ce-id, ce-source, ce-specversion, ce-type headers) "
            f"or structured mode (Content-Type: {STRUCTURED_JSON})"
        )
    if "datacontenttype" in attributes:
        raise EventError("binary mode carries datacontenttype as Content-Type; do not send ce-datacontenttype")
    if content_type:
        attributes["datacontenttype"] = content_type
    lenient: list[str] = []
    return Event(_validate(attributes, lenient), body, "binary", tuple(lenient))


def header_value(name: str, raw: str) -> str:
    """An attribute value from its header, per the HTTP binding (3.1.3.2): surrounding whitespace dropped,
    double-quoted strings unescaped, then one round of percent-decoding whose bytes must be valid UTF-8.

    `raw` is the header's bytes as ISO-8859-1 (how ASGI servers hand them over); raw non-ASCII bytes are
    tolerated and read as UTF-8, like percent-encoded ones.
    """
    text = raw.strip(" \t")
    if '"' in text:
        text = _unquote(name, text)
    try:
        encoded = text.encode("latin-1")
    except UnicodeEncodeError:
        raise EventError(f"header {name!r} holds characters that are not bytes; percent-encode them") from None
    if _BAD_ESCAPE.search(encoded):
        raise EventError(f"header {name!r} has a '%' that does not start a %XX escape; encode '%' as %25")
    try:
        return unquote_to_bytes(encoded).decode("utf-8")
    except UnicodeDecodeError:
        raise EventError(f"header {name!r} is not valid UTF-8 after percent-decoding") from None


def _unquote(name: str, text: str) -> str:
    """Undo RFC 7230 quoted-strings (3.2.6) anywhere in `text`; older CloudEvents senders used them."""
    out: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            out.append(char)
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        else:
            out.append(char)
    if quoted:
        raise EventError(f"header {name!r} has a double-quoted string that is not closed")
    return "".join(out)


def _parse_structured(body: bytes) -> Event:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise EventError("structured body is not UTF-8 text") from None
    # RFC 8259 lets a parser ignore a byte order mark.
    members = _json_members(text.removeprefix("\ufeff"))
    if "data" in members and "data_base64" in members:
        raise EventError("structured event has both 'data' and 'data_base64'; send one")
    data_member = members.pop("data", None)
    encoded = members.pop("data_base64", (None, ""))[0]
    # The JSON format: an attribute set to null is the same as one left out.
    lenient: list[str] = []
    attributes = _validate({name: value for name, (value, _) in members.items() if value is not None}, lenient)
    if encoded is not None:
        return Event(attributes, _base64(encoded), "structured", tuple(lenient))
    if data_member is None:
        return Event(attributes, b"", "structured", tuple(lenient))
    value, raw = data_member
    if "datacontenttype" not in attributes:
        # No datacontenttype means application/json in this format; name it so binary mode keeps the meaning.
        attributes["datacontenttype"] = "application/json"
    media, params = _split_media(str(attributes["datacontenttype"]))
    if is_json(media):
        # The member's own JSON text, byte for byte: data is opaque and is forwarded as the sender wrote it.
        return Event(attributes, raw.encode("utf-8"), "structured", tuple(lenient))
    if value is None:
        return Event(attributes, b"", "structured", tuple(lenient))  # some senders write an absent payload as null
    if not isinstance(value, str):
        raise EventError(
            f"'data' must be a string when datacontenttype {media!r} is not JSON, got {_json_type(value)}; "
            "send bytes as 'data_base64'"
        )
    data = _encode_text(value, params.get("charset", "utf-8"), lenient)
    return Event(attributes, data, "structured", tuple(lenient))


def _json_members(text: str) -> dict[str, tuple[Any, str]]:
    """The top-level members of a JSON object: name -> (value, the value's JSON text). Reads the object itself
    so that a repeated member is an error and `data` keeps its exact text; values go to the stdlib scanner."""
    members: dict[str, tuple[Any, str]] = {}

    def value_at(index: int) -> tuple[Any, int]:
        return _json_value(text, index)

    index = _skip_space(text, 0)
    if not text.startswith("{", index):
        if index == len(text):
            raise EventError("structured body is empty; it must be a JSON object")
        document, _ = value_at(index)
        raise EventError(f"structured body must be a JSON object, got {_json_type(document)}")
    index = _skip_space(text, index + 1)
    if text.startswith("}", index):
        index += 1
    else:
        while True:
            if not text.startswith('"', index):
                _bad_json(f"expected a member name at character {index}")
            name, index = value_at(index)
            index = _skip_space(text, index)
            if not text.startswith(":", index):
                _bad_json(f"expected ':' after member {name!r}")
            start = _skip_space(text, index + 1)
            value, end = value_at(start)
            if name in members:
                raise EventError(f"member {name!r} appears more than once in the structured event")
            members[name] = (value, text[start:end])
            index = _skip_space(text, end)
            if text.startswith("}", index):
                index += 1
                break
            if not text.startswith(",", index):
                _bad_json(f"expected ',' or '}}' after member {name!r}")
            index = _skip_space(text, index + 1)
    if _skip_space(text, index) != len(text):
        _bad_json("there is more text after the object")
    return members


def _parse_int(digits: str) -> int:
    return int(digits) if len(digits) <= 20 else _LONG_INTEGER


def _no_constant(name: str) -> NoReturn:
    _bad_json(f"{name} is not a JSON value")


_DECODER: Final = json.JSONDecoder(parse_constant=_no_constant, parse_int=_parse_int)


def _json_value(text: str, index: int) -> tuple[Any, int]:
    """The JSON value at `index` and the index after it. A value nested deeper than Python's recursion limit
    (the stdlib scanner recurses) is checked by `_nested_end` instead, up to MAX_JSON_NESTING, and stands as an
    empty container of its kind: only `data` can be one, and `data` is kept as its text."""
    try:
        return _DECODER.raw_decode(text, index)
    except json.JSONDecodeError as exc:
        _bad_json(f"{exc.msg} at line {exc.lineno} column {exc.colno}")
    except RecursionError:
        end = _nested_end(text, index)
        return ({} if text[index] == "{" else []), end


def _nested_end(text: str, index: int) -> int:
    """Where the JSON array or object at `index` ends, checked without recursion: a stack of the closing
    brackets of the open containers, the scalars read by the stdlib (they do not nest). Linear in the text."""
    closers: list[str] = []
    while True:
        # A value is expected at `index`.
        index = _skip_space(text, index)
        char = text[index : index + 1]
        if char in ("{", "["):
            if len(closers) >= MAX_JSON_NESTING:
                _bad_json(f"it is nested too deeply: over {MAX_JSON_NESTING} levels (the limit of Knative's broker)")
            closers.append("}" if char == "{" else "]")
            index = _skip_space(text, index + 1)
            if not text.startswith(closers[-1], index):
                if char == "{":
                    index = _member_name_end(text, index)
                continue
            closers.pop()
            index += 1
        else:
            index = _scalar_end(text, index)
        index = _after_value(text, index, closers)
        if not closers:
            return index


def _after_value(text: str, index: int, closers: list[str]) -> int:
    """Close the containers that end after a value; then where the next value starts (or the end)."""
    while closers:
        index = _skip_space(text, index)
        if text.startswith(closers[-1], index):
            closers.pop()
            index += 1
            continue
        if not text.startswith(",", index):
            _bad_json(f"expected ',' or '{closers[-1]}' at character {index}")
        index = _skip_space(text, index + 1)
        return _member_name_end(text, index) if closers[-1] == "}" else index
    return index


def _scalar_end(text: str, index: int) -> int:
    try:
        return int(_DECODER.raw_decode(text, index)[1])
    except json.JSONDecodeError as exc:
        _bad_json(f"{exc.msg} at line {exc.lineno} column {exc.colno}")


def _member_name_end(text: str, index: int) -> int:
    """After `"name" :` in an object, where its value starts."""
    if not text.startswith('"', index):
        _bad_json(f"expected a member name at character {index}")
    index = _skip_space(text, _scalar_end(text, index))
    if not text.startswith(":", index):
        _bad_json(f"expected ':' at character {index}")
    return index + 1


def _skip_space(text: str, index: int) -> int:
    """The index of the first non-whitespace character (JSON's whitespace) at or after `index`."""
    while index < len(text) and text[index] in " \t\n\r":
        index += 1
    return index


def _bad_json(problem: str) -> NoReturn:
    raise EventError(f"structured body is not valid JSON: {problem}")


def _base64(encoded: object) -> bytes:
    if not isinstance(encoded, str):
        raise EventError(f"'data_base64' must be a string, got {_json_type(encoded)}")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise EventError("'data_base64' is not valid base64 (RFC 4648, with padding, no line breaks)") from None


def _encode_text(value: str, charset: str, lenient: list[str]) -> bytes:
    """The text `value` in `charset`; in UTF-8 when that cannot be done, as sdk-go always does (it ignores the
    charset), rather than refuse an event Knative delivers."""
    try:
        return value.encode(codecs.lookup(charset).name)
    except LookupError:
        # Unknown, or a codec that is not a text encoding (rot13, base64): str.encode refuses those too.
        lenient.append(f"datacontenttype names charset {charset!r}, not a known text encoding; data kept as UTF-8")
    except UnicodeError:
        # Any encoding failure, including codecs such as idna and undefined that raise the base class.
        lenient.append(f"'data' cannot be encoded in charset {charset!r}; data kept as UTF-8")
    return value.encode("utf-8", "surrogatepass")


def is_json(media: str) -> bool:
    """Whether a (lower-cased, parameterless) media type declares JSON: `*/json` or `*/*+json`."""
    subtype = media.partition("/")[2]
    return subtype == "json" or subtype.endswith("+json")


# ---------------------------------------------------------------------------------------------------------
# Writing an HTTP request.


def to_http(event: Event, mode: str) -> tuple[dict[str, str], bytes]:
    """Headers and body that carry `event` in `mode` ("binary" or "structured"), data bytes unchanged.

    An event whose data is itself a CloudEvent (datacontenttype application/cloudevents...) always goes in
    structured mode: in binary mode its Content-Type would make the receiver read the data as the event.
    """
    media = _split_media(str(event.attributes.get("datacontenttype", "")))[0]
    # Data whose own type is a CloudEvents format would read as a structured event in binary mode.
    if mode == "structured" or media.startswith("application/cloudevents"):
        return {"content-type": STRUCTURED_JSON}, _structured_body(event)
    headers = {
        f"ce-{name}": quote(canonical(value), safe=_HEADER_SAFE)
        for name, value in event.attributes.items()
        if name != "datacontenttype"
    }
    if "datacontenttype" in event.attributes:
        headers["content-type"] = str(event.attributes["datacontenttype"])
    return headers, event.data


def _structured_body(event: Event) -> bytes:
    document: dict[str, Any] = dict(event.attributes)
    json_text: str | None = None
    if event.data:
        media, params = _split_media(str(document.get("datacontenttype", "")))
        text = _as_text(event.data, params.get("charset", "utf-8"))
        if text is not None and is_json(media) and _is_json_text(text):
            json_text = text
        elif text is not None and (media.startswith("text/") or media.endswith(("/xml", "+xml"))):
            document["data"] = text
        else:
            # No (or a non-textual) datacontenttype: bytes, which the JSON format carries as base64.
            document["data_base64"] = base64.b64encode(event.data).decode("ascii")
    body = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    if json_text is not None:
        # The data's own JSON text goes in as it is, so the bytes survive the trip through structured mode.
        body = f'{body[:-1]},"data":{json_text}}}'
    return body.encode("utf-8")


def _as_text(data: bytes, charset: str) -> str | None:
    """`data` as text, if it round-trips exactly (UTF-8 or ASCII only: other charsets go as base64)."""
    if charset.lower() not in _UTF8_NAMES:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _is_json_text(text: str) -> bool:
    try:
        _, end = _json_value(text, _skip_space(text, 0))
    except (EventError, IndexError):
        return False
    return _skip_space(text, end) == len(text)


SHOWN_EXTENSIONS: Final = frozenset(
    {"traceparent", "tracestate", "knativearrivaltime", "partitionkey", "sequence", "sequencetype", "dataref"}
)
"""Extensions whose values are logged: the spec's documented ones that carry no secret (distributed tracing,
partitioning, sequence, dataref) and Knative's arrival time. Any other extension may hold a credential (an
`authtoken`), so only its name is logged."""


def describe(event: Event) -> Block:
    """The article's log block: "Event received: Context Attributes, ..." then extensions, then data. Every
    value is escaped and cut (plugins/escaping.py), extension values not known to be safe are masked."""
    lines = ["Event received: Context Attributes,"]
    standard = (*REQUIRED, *OPTIONAL)
    for name in ("specversion", "type", "source", "subject", "id", "time", "dataschema", "datacontenttype"):
        if name in event.attributes:
            lines.append(f"  {name}: {escape(canonical(event.attributes[name]))}")
    extensions = sorted(name for name in event.attributes if name not in standard)
    if extensions:
        lines.append("Extensions,")
        for name in extensions:
            value = escape(canonical(event.attributes[name])) if name in SHOWN_EXTENSIONS else MASK
            lines.append(f"  {escape(name, 256)}: {value}")
    if event.data:
        lines.append("Data,")
        shown = event.data[:_DESCRIBE_LIMIT]
        try:
            # final=False: a character cut in two at the limit is left out rather than called invalid.
            text = escape(codecs.getincrementaldecoder("utf-8")().decode(shown, final=False), _DESCRIBE_LIMIT)
        except UnicodeDecodeError:
            text = "(base64) " + base64.b64encode(shown).decode("ascii")
        cut = f" ... ({len(event.data)} bytes in all)" if len(event.data) > _DESCRIBE_LIMIT else ""
        lines.append(f"  {text}{cut}")
    return Block("\n".join(lines))


def describe_sdk_event(event: BaseCloudEvent) -> Block:
    """`describe` for an event of the cloudevents SDK (what second's app holds), from "Context Attributes," on:
    the app's own message says "Event received:"."""
    attributes = {
        name: value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value
        for name, value in event.get_attributes().items()
        if value is not None
    }
    data = event.get_data()
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    elif data is not None and not isinstance(data, bytes | bytearray):
        data = json.dumps(data, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return Block(describe(Event(attributes, bytes(data or b""))).removeprefix("Event received: "))
