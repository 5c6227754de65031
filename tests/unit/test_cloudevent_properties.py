"""Properties of the CloudEvents parser and encoder over generated input.

Any valid event survives to_http -> parse in both content modes; any junk in headers or body ends in an
Event or an EventError, nothing else; and whatever is accepted can be forwarded (re-encoded and read again),
which is what the broker does with every event it takes.
"""

from __future__ import annotations

import json
import string
from datetime import UTC, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers

from plugins.cloudevents import OPTIONAL, REQUIRED, STRUCTURED_JSON, Event, EventError, canonical, parse, to_http

EXAMPLES = settings(max_examples=200, deadline=None)

# A CloudEvents String: any Unicode but control characters, surrogates and noncharacters (all unassigned).
ce_text = st.text(st.characters(exclude_categories=("Cc", "Cs", "Cn")))
ce_name = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=25).filter(
    lambda name: name not in {*REQUIRED, *OPTIONAL, "data"}
)
_URI_CHARS = string.ascii_letters + string.digits + "-._~!$&'()*+,;=@/"
uri_path = st.lists(st.one_of(st.sampled_from(_URI_CHARS), st.integers(0, 255).map("%{:02X}".format))).map("".join)
source = st.one_of(
    st.builds(lambda path: f"https://example.com/{path}", uri_path),
    st.builds(lambda path: f"urn:{path}", uri_path.filter(bool)),
    st.builds(lambda path: f"/{path}", uri_path),
    uri_path.filter(lambda path: bool(path) and not path.startswith("//")),
)
offsets = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda minutes: timezone(timedelta(minutes=minutes)))
time = st.builds(
    lambda moment, zulu: moment.isoformat().replace("+00:00", "Z" if zulu else "+00:00"),
    st.datetimes(timezones=st.one_of(st.just(UTC), offsets)),
    st.booleans(),
)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | ce_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(ce_text, children, max_size=4),
    max_leaves=12,
)
# (datacontenttype, data): each kind of payload the formats treat differently.
payload = st.one_of(
    st.tuples(st.just("application/json"), json_value.map(lambda v: json.dumps(v, ensure_ascii=False).encode())),
    st.tuples(st.just("application/cloudevents+json; charset=utf-8"), json_value.map(lambda v: json.dumps(v).encode())),
    st.tuples(st.just("text/plain; charset=utf-8"), st.text().map(lambda t: t.encode("utf-8", "surrogatepass"))),
    st.tuples(st.just("application/xml"), ce_text.map(lambda t: f"<a>{t}</a>".encode())),
    st.tuples(st.just("application/octet-stream"), st.binary()),
    st.tuples(st.none(), st.binary()),
)
extension_value = st.one_of(ce_text, st.integers(-(2**31), 2**31 - 1), st.booleans())


@st.composite
def events(draw: st.DrawFn) -> Event:
    attributes: dict[str, str | int | bool] = {
        "specversion": "1.0",
        "id": draw(ce_text.filter(bool)),
        "source": draw(source),
        "type": draw(ce_text.filter(bool)),
    }
    optional = {
        "subject": ce_text.filter(bool),
        "time": time,
        "dataschema": uri_path.map(lambda path: f"https://example.com/{path}"),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            attributes[name] = draw(strategy)
    attributes.update(draw(st.dictionaries(ce_name, extension_value, max_size=4)))
    content_type, data = draw(payload)
    if content_type is not None:
        attributes["datacontenttype"] = content_type
    return Event(attributes, data)


def over_the_wire(headers: dict[str, str]) -> Headers:
    """The headers as an ASGI server hands them to the app: bytes read as ISO-8859-1."""
    return Headers(raw=[(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()])


@EXAMPLES
@given(events())
def test_any_valid_event_round_trips_in_structured_mode(event: Event) -> None:
    headers, body = to_http(event, "structured")
    back = parse(over_the_wire(headers), body)
    assert back.attributes == event.attributes  # JSON keeps integers and booleans as they are
    assert back.data == event.data


@EXAMPLES
@given(events())
def test_any_valid_event_round_trips_in_binary_mode(event: Event) -> None:
    headers, body = to_http(event, "binary")
    for name, value in headers.items():
        if name.startswith("ce-"):
            assert all(0x21 <= ord(char) <= 0x7E for char in value), f"{name}: {value!r} is not printable ASCII"
    back = parse(over_the_wire(headers), body)
    if str(event.attributes.get("datacontenttype", "")).startswith("application/cloudevents"):
        # Data that is itself a CloudEvent would read as the event in binary mode: it goes structured.
        assert headers == {"content-type": STRUCTURED_JSON}
        assert back.attributes == event.attributes
    else:
        # Headers have no types: every attribute arrives as its canonical string.
        assert back.attributes == {name: canonical(value) for name, value in event.attributes.items()}
    assert back.data == event.data


def forwardable(event: Event) -> None:
    """What was accepted can be sent on in either mode and is read back the same."""
    for mode in ("binary", "structured"):
        headers, body = to_http(event, mode)
        again = parse(over_the_wire(headers), body)
        assert {n: canonical(v) for n, v in again.attributes.items()} == {
            n: canonical(v) for n, v in event.attributes.items()
        }


_HEADER_NAMES = st.sampled_from(
    [
        *("ce-id", "ce-source", "ce-specversion", "ce-type", "ce-time", "ce-subject", "ce-dataschema", "ce-x"),
        *("ce-datacontenttype", "ce-data", "CE-ID", "content-type", "ce-", "ce-A_b", "traceparent"),
    ]
)
_HEADER_VALUES = st.one_of(
    st.text(st.characters(max_codepoint=0xFF)),  # what a server can hand over
    st.sampled_from(["1.0", "/s", "t", "2018-04-05T17:31:00Z", "%", "%C0%A0", '"a', '"\\', STRUCTURED_JSON]),
    st.sampled_from(["application/cloudevents+json; charset=latin-1", "application/cloudevents-batch+json"]),
    st.text(),  # and what a caller of parse() could pass
)
_VALID_BINARY = {"ce-id": "1", "ce-source": "/s", "ce-specversion": "1.0", "ce-type": "t"}


@EXAMPLES
@given(
    base=st.sampled_from([{}, _VALID_BINARY]),
    junk=st.lists(st.tuples(_HEADER_NAMES | st.text(max_size=8), _HEADER_VALUES), max_size=6),
    body=st.binary(max_size=64),
)
def test_header_junk_gives_an_event_or_an_event_error(
    base: dict[str, str], junk: list[tuple[str, str]], body: bytes
) -> None:
    raw = [*base.items(), *junk]
    try:
        headers: Any = Headers(raw=[(n.encode("latin-1"), v.encode("latin-1")) for n, v in raw])
    except UnicodeEncodeError:
        headers = dict(raw)  # not something a server produces, but parse() must still answer sanely
    try:
        event = parse(headers, body)
    except EventError as error:
        assert error.status in (400, 415) and error.message
        return
    forwardable(event)


def _mutate(text: str, position: int, insert: str) -> str:
    position %= len(text) + 1
    return text[:position] + insert + text[position:]


_MEMBERS = st.dictionaries(
    st.one_of(st.sampled_from(["id", "source", "specversion", "type", "time", "data", "data_base64"]), st.text()),
    json_value,
    max_size=5,
)


@EXAMPLES
@given(
    members=_MEMBERS,
    keep_required=st.booleans(),
    cut=st.one_of(st.none(), st.integers(0, 400)),
    insert=st.sampled_from(["", "{", "}", ",", '"', "\\", "NaN", "\ud800", "\x00", "[" * 50]),
    position=st.integers(0, 400),
    content_type=st.sampled_from(
        [STRUCTURED_JSON, STRUCTURED_JSON + "; charset=utf-8", "APPLICATION/CLOUDEVENTS+JSON"]
    ),
)
def test_structured_junk_gives_an_event_or_an_event_error(  # noqa: PLR0917 - hypothesis passes them positionally
    members: dict[str, Any], keep_required: bool, cut: int | None, insert: str, position: int, content_type: str
) -> None:
    document = {**({"id": "1", "source": "/s", "specversion": "1.0", "type": "t"} if keep_required else {}), **members}
    text = _mutate(json.dumps(document), position, insert)
    body = text.encode("utf-8", "surrogatepass")[:cut]
    try:
        event = parse({"content-type": content_type}, body)
    except EventError as error:
        assert error.status == 400 and error.message
        return
    forwardable(event)


@EXAMPLES
@given(body=st.binary(max_size=256), content_type=st.sampled_from([STRUCTURED_JSON, "application/json", ""]))
def test_arbitrary_bytes_give_an_event_or_an_event_error(body: bytes, content_type: str) -> None:
    headers = {"content-type": content_type} if content_type == STRUCTURED_JSON else {**_VALID_BINARY}
    if content_type:
        headers["content-type"] = content_type
    try:
        event = parse(headers, body)
    except EventError:
        return
    forwardable(event)
