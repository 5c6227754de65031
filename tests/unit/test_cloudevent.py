"""CloudEvents 1.0 in both HTTP content modes: building, parsing, encoding, and every rule a receiver enforces.

The expected values come from the spec texts (CloudEvents 1.0, its HTTP protocol binding and JSON format),
quoted here where a test follows one of their examples.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cloudevents.core.bindings.http import HTTPMessage, to_binary_event, to_structured_event
from cloudevents.core.v1.event import CloudEvent
from starlette.datastructures import Headers

from plugins.cloudevents import (
    STRUCTURED_JSON,
    Event,
    EventError,
    describe,
    header_value,
    parse,
    to_http,
)

REQUIRED = {"specversion": "1.0", "type": "com.example.someevent", "source": "/mycontext", "id": "A234-1234-1234"}
BINARY = {f"ce-{name}": value for name, value in REQUIRED.items()}
STRUCTURED = {"content-type": STRUCTURED_JSON}


def structured(members: dict[str, Any] | None = None, **more: Any) -> bytes:
    return json.dumps({**REQUIRED, **(members or {}), **more}).encode()


def rejection(headers: Any, body: bytes = b"") -> EventError:
    with pytest.raises(EventError) as info:
        parse(headers, body)
    return info.value


# --- what first sends (the cloudevents SDK), read back by the strict reader ------------------------------------


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_what_first_sends_reads_back_with_its_data_unchanged(mode: str) -> None:
    attributes = {"type": "dev.knative.tracing.hello", "source": "first", "datacontenttype": "text/plain"}
    sent = CloudEvent(attributes, b"hello from first")
    message = to_binary_event(sent) if mode == "binary" else to_structured_event(sent)
    received = parse(message.headers, message.body)
    assert received.mode == mode
    assert received.id == sent.get_id() and received.type == "dev.knative.tracing.hello"
    assert received.attributes["specversion"] == "1.0" and received.attributes["time"]
    assert received.data == b"hello from first"


def test_data_that_is_itself_a_cloudevent_travels_in_structured_mode() -> None:
    # In binary mode its Content-Type would make the receiver read the data as the event (the binding decides by
    # Content-Type first), which is why first sends such an event structured.
    inner = structured()
    sent = CloudEvent({"type": "t", "source": "first", "datacontenttype": STRUCTURED_JSON}, inner)
    assert parse(*_message(to_binary_event(sent))).type != "t"
    received = parse(*_message(to_structured_event(sent)))
    assert received.type == "t" and received.data == inner


def _message(message: HTTPMessage) -> tuple[dict[str, str], bytes]:
    return message.headers, message.body


# --- the JSON format's own examples (json-format.md 3.2), and their binary-mode re-encodings ---------------

SPEC_EXAMPLES: list[tuple[dict[str, Any], dict[str, str], bytes]] = [
    (
        {
            "id": "B234-1234-1234",
            "time": "2018-04-05T17:31:00Z",
            "comexampleextension1": "value",
            "comexampleothervalue": 5,
            "unsetextension": None,
            "datacontenttype": "application/xml",
            "data": '<much wow="xml"/>',
        },
        {"ce-comexampleothervalue": "5", "content-type": "application/xml"},
        b'<much wow="xml"/>',
    ),
    (
        {
            "subject": None,
            "id": "C234-1234-1234",
            "datacontenttype": "application/json",
            "data": {"appinfoA": "abc", "appinfoB": 123, "appinfoC": True},
        },
        {"content-type": "application/json"},
        b'{"appinfoA": "abc", "appinfoB": 123, "appinfoC": true}',
    ),
    (
        {"id": "C234-1234-1234", "datacontenttype": "application/json", "data": 1.5},
        {"content-type": "application/json"},
        b"1.5",
    ),
    # No datacontenttype: the data is JSON and binary mode says so explicitly, the string keeps its quotes.
    (
        {"id": "D234-1234-1234", "data": "I'm just a string"},
        {"content-type": "application/json"},
        b'"I\'m just a string"',
    ),
    # data_base64 and no datacontenttype: no content type is inferred, none is sent.
    ({"id": "D234-1234-1234", "data_base64": "eyAieHl6IjogMTIzIH0="}, {}, b'{ "xyz": 123 }'),
]


@pytest.mark.parametrize(("members", "expected_headers", "data"), SPEC_EXAMPLES)
def test_json_format_examples_parse_and_reencode_in_binary_mode(
    members: dict[str, Any], expected_headers: dict[str, str], data: bytes
) -> None:
    event = parse(STRUCTURED, structured(members))
    assert event.data == data
    assert "unsetextension" not in event.attributes and "subject" not in event.attributes  # null is unset
    headers, body = to_http(event, "binary")
    assert body == data
    assert headers.items() >= expected_headers.items()
    assert ("content-type" in headers) == ("content-type" in expected_headers)
    assert "ce-datacontenttype" not in headers
    assert parse(headers, body).attributes == {
        name: str(value) for name, value in event.attributes.items()
    }  # binary mode carries every attribute as its string form


# The conformance suite's minimal events (cloudevents/conformance, yaml/v1.0/v1_minimum.yaml).
CONFORMANCE = [
    ("text/plain; charset=us-ascii", "Hello, World!\n"),
    ("text/plain; charset=utf-8", "Hello, 🌎!\n"),
    ("application/json; charset=utf-8", '"Hello, 🌎!"\n'),
    ("application/json; charset=utf-8", '{"msg":"Hello, 🌎!"}\n'),
    ("application/json; charset=utf-8", '["Hello","🌎!"]\n'),
    ("application/xml; charset=utf-8", "<msg>Hello, 🌎!</msg>\n"),
]


@pytest.mark.parametrize(("content_type", "data"), CONFORMANCE)
@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_conformance_minimum_events_survive_both_modes(mode: str, content_type: str, data: str) -> None:
    attributes: dict[str, str | int | bool] = {
        "specversion": "1.0",
        "type": "io.cloudevents.minimum",
        "id": "conformance-0001",
        "source": "//github.com/cloudevents/cloudeventsconformance/yaml/v1.yaml",
        "datacontenttype": content_type,
    }
    sent = Event(attributes, data.encode(), mode)
    headers, body = to_http(sent, mode)
    received = parse(headers, body)
    assert received.attributes == attributes
    assert received.data.strip() == data.encode().strip()  # JSON data goes in structured mode as a JSON value
    if mode == "structured" and content_type.startswith("application/json"):
        assert json.loads(body)["data"] == json.loads(data)  # a JSON value, not a string holding JSON


# --- binary mode: header values ---------------------------------------------------------------------------


def test_percent_encoding_follows_the_binding_example() -> None:
    # http-protocol-binding.md 3.1.3.2: "Euro € 😀" is sent as "Euro%20%E2%82%AC%20%F0%9F%98%80".
    event = Event({**REQUIRED, "subject": "Euro € 😀"})
    headers, _ = to_http(event, "binary")
    assert headers["ce-subject"] == "Euro%20%E2%82%AC%20%F0%9F%98%80"
    assert parse(headers, b"").subject == "Euro € 😀"


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("Euro%20%e2%82%ac", "Euro €"),  # decoding accepts lower-case hex
        ("%41%42c", "ABc"),  # unnecessarily encoded characters are accepted
        ('"quoted value"', "quoted value"),  # older senders used RFC 7230 quoted-strings...
        ('"say \\"hi\\""', 'say "hi"'),  # ...with backslash escapes
        ('a"b c"d', "ab cd"),
        ('"100%25"', "100%"),  # quotes come off first, then one round of percent-decoding
        ("%2541", "%41"),  # one round only
        ("  padded\t", "padded"),  # optional whitespace around the value is not part of it
        ("caf\xc3\xa9", "café"),  # raw UTF-8 bytes, as an ASGI server hands them over (ISO-8859-1)
        ("", ""),
    ],
)
def test_header_values_are_unquoted_and_percent_decoded(raw: str, value: str) -> None:
    assert header_value("ce-subject", raw) == value


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("%C0%A0", "not valid UTF-8"),  # the binding's own example: an overlong encoding of U+0020
        ("%ED%A0%80", "not valid UTF-8"),  # an encoded surrogate
        ("%FF", "not valid UTF-8"),
        ("caf\xe9", "not valid UTF-8"),  # a raw ISO-8859-1 byte
        ("50%", "does not start a %XX escape"),
        ("%zz", "does not start a %XX escape"),
        ("%4", "does not start a %XX escape"),
        ('"unclosed', "not closed"),
        ("€", "not bytes"),
    ],
)
def test_bad_header_values_are_rejected(raw: str, problem: str) -> None:
    with pytest.raises(EventError, match=problem) as info:
        header_value("ce-subject", raw)
    assert "ce-subject" in info.value.message


def test_binary_extensions_are_strings_and_names_are_case_insensitive() -> None:
    headers = {
        "CE-ID": "1",
        "Ce-Source": "/s",
        "ce-specversion": "1.0",
        "ce-type": "t",
        "ce-comexampleothervalue": "5",
        "ce-flag": "true",
        "ce-averylongextensionnamebeyondtwenty": "ok",  # the 20-character limit is only a SHOULD NOT
        "ce-traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "content-type": "Application/Octet-Stream",
        "user-agent": "not an attribute",
    }
    event = parse(headers, b"\x00\x01\xff")
    assert event.attributes["comexampleothervalue"] == "5"
    assert event.attributes["flag"] == "true"
    assert event.attributes["averylongextensionnamebeyondtwenty"] == "ok"
    assert event.attributes["datacontenttype"] == "Application/Octet-Stream"
    assert "user-agent" not in event.attributes
    assert event.data == b"\x00\x01\xff"


@pytest.mark.parametrize(
    "media", ["text/plain;charset=utf-8", "text/plain; charset = utf-8", 'a/b; c="d; e"', "application/json;", "A/B"]
)
def test_media_types_with_parameters_are_accepted_as_sent(media: str) -> None:
    assert parse({**BINARY, "content-type": media}, b"").attributes["datacontenttype"] == media


def test_binary_without_content_type_has_no_datacontenttype() -> None:
    event = parse(BINARY, b"opaque")
    assert "datacontenttype" not in event.attributes
    assert event.data == b"opaque"


def test_structured_headers_are_ignored_next_to_the_body() -> None:
    # The binding lets structured messages repeat attributes as headers; the body is what counts.
    event = parse({**STRUCTURED, "ce-id": "header-id"}, structured(id="body-id"))
    assert event.id == "body-id"


# --- what is valid: attribute values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "time",
    [
        "2018-04-05T17:31:00Z",
        "2018-04-05t17:31:00z",  # RFC 3339 5.6: T and Z may be lower case
        "2018-04-05T17:31:00.123456789+02:00",  # more than microsecond precision
        "2018-04-05T17:31:00-00:00",  # "unknown local offset"
        "2016-12-31T23:59:60Z",  # a leap second
        "2024-02-29T00:00:00Z",  # a leap day
    ],
)
def test_valid_times_are_accepted_as_sent(time: str) -> None:
    assert parse({**BINARY, "ce-time": time}, b"").attributes["time"] == time


@pytest.mark.parametrize(
    "source",
    [
        "https://github.com/cloudevents",
        "mailto:cncf-wg-serverless@lists.cncf.io",
        "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
        "/cloudevents/spec/pull/123",
        "1-555-123-4567",
        "//github.com/cloudevents/conformance",  # a network-path reference
        "http://[::1]:8080/x?q=1#frag",
        "/caf%C3%A9",
        "first",
    ],
)
def test_uri_reference_sources_are_accepted(source: str) -> None:
    headers, body = to_http(Event({**REQUIRED, "source": source}), "binary")
    assert parse(headers, body).source == source


def test_structured_keeps_extension_types_within_the_32_bit_range() -> None:
    members = {"low": -(2**31), "high": 2**31 - 1, "flag": False, "text": "", "subject": None}
    event = parse(STRUCTURED, structured(members))
    assert event.attributes["low"] == -(2**31) and event.attributes["high"] == 2**31 - 1
    assert event.attributes["flag"] is False and event.attributes["text"] == ""
    assert "subject" not in event.attributes
    headers, _ = to_http(event, "binary")
    assert headers["ce-flag"] == "false" and headers["ce-low"] == "-2147483648"


# --- what is valid: data ----------------------------------------------------------------------------------


def test_structured_json_data_keeps_the_senders_bytes() -> None:
    body = b'{"specversion":"1.0","type":"t","source":"/s","id":"1","data" : {"b": 2,  "a": [1, 2.50]} }'
    event = parse({"content-type": "Application/CloudEvents+JSON; Charset=UTF-8"}, body)
    assert event.data == b'{"b": 2,  "a": [1, 2.50]}'
    assert event.attributes["datacontenttype"] == "application/json"  # implied by the JSON format


@pytest.mark.parametrize("media", ["application/vnd.example+json", "text/json", "APPLICATION/JSON; charset=utf-8"])
def test_any_json_media_type_carries_a_json_value(media: str) -> None:
    event = parse(STRUCTURED, structured(datacontenttype=media, data=["x", None]))
    assert json.loads(event.data) == ["x", None]
    assert json.loads(to_http(event, "structured")[1])["data"] == ["x", None]


def test_explicit_null_data_is_a_json_null_payload() -> None:
    assert parse(STRUCTURED, structured(data=None)).data == b"null"
    # Not JSON: null can only mean no data.
    assert parse(STRUCTURED, structured(data=None, datacontenttype="text/plain")).data == b""


def test_text_data_is_encoded_in_its_charset() -> None:
    event = parse(STRUCTURED, structured(datacontenttype="text/plain; charset=iso-8859-1", data="café"))
    assert event.data == "café".encode("latin-1")
    # Not UTF-8: structured mode sends it on as base64, so the bytes cannot change.
    document = json.loads(to_http(event, "structured")[1])
    assert base64.b64decode(document["data_base64"]) == event.data


def test_data_base64_round_trips_bytes_and_infers_no_content_type() -> None:
    event = parse(STRUCTURED, structured(data_base64=base64.b64encode(bytes(range(256))).decode()))
    assert event.data == bytes(range(256))
    assert "datacontenttype" not in event.attributes
    headers, body = to_http(event, "structured")
    assert json.loads(body)["data_base64"] and parse(headers, body) == event


def test_a_byte_order_mark_before_structured_json_is_ignored() -> None:
    assert parse(STRUCTURED, b"\xef\xbb\xbf" + structured()).id == REQUIRED["id"]


def test_structured_encoding_picks_data_text_or_base64() -> None:
    def document(media: str | None, data: bytes) -> dict[str, Any]:
        attributes: dict[str, str | int | bool] = {**REQUIRED, **({"datacontenttype": media} if media else {})}
        return dict(json.loads(to_http(Event(attributes, data), "structured")[1]))

    assert document("application/json", b'{"a":1}')["data"] == {"a": 1}
    assert document("text/plain", b"hi")["data"] == "hi"
    assert document("application/xml", b"<a/>")["data"] == "<a/>"
    # JSON that is not JSON, text that is not UTF-8, octets, or no type at all: base64 keeps the bytes.
    for media, data in [
        ("application/json", b"{oops"),
        ("text/plain", b"\xff"),
        ("image/png", b"\x89PNG"),
        (None, b"x"),
    ]:
        assert base64.b64decode(document(media, data)["data_base64"]) == data


# --- what is rejected -------------------------------------------------------------------------------------


def _without(name: str) -> dict[str, str]:
    return {key: value for key, value in BINARY.items() if key != f"ce-{name}"}


BINARY_REJECTIONS: list[tuple[str, Any, str]] = [
    *[(f"missing {name}", _without(name), f"{name!r} is missing") for name in REQUIRED],
    *[(f"empty {name}", {**BINARY, f"ce-{name}": ""}, f"{name!r} is empty") for name in REQUIRED],
    *[(f"specversion {v}", {**BINARY, "ce-specversion": v}, "not supported") for v in ("0.3", "1.1", "1")],
    ("no ce- headers", {"content-type": "text/plain"}, "no CloudEvent found"),
    ("time without zone", {**BINARY, "ce-time": "2018-04-05T17:31:00"}, "'time'"),
    ("time with a space", {**BINARY, "ce-time": "2018-04-05 17:31:00Z"}, "'time'"),
    ("time on 30 February", {**BINARY, "ce-time": "2018-02-30T17:31:00Z"}, "no such date"),
    ("time at 24:00", {**BINARY, "ce-time": "2018-04-05T24:00:00Z"}, "out of range"),
    ("time as a number", {**BINARY, "ce-time": "1522949460"}, "'time'"),
    ("relative dataschema", {**BINARY, "ce-dataschema": "/schema.json"}, "no scheme"),
    ("empty subject", {**BINARY, "ce-subject": ""}, "'subject' is empty"),
    ("newline", {**BINARY, "ce-subject": "a%0Ab"}, "U+000A"),
    ("C1 control", {**BINARY, "ce-subject": "%C2%85"}, "U+0085"),
    ("noncharacter", {**BINARY, "ce-subject": "%EF%BF%BE"}, "U+FFFE"),
    ("overlong UTF-8", {**BINARY, "ce-subject": "%C0%A0"}, "not valid UTF-8"),
    ("ce-datacontenttype", {**BINARY, "ce-datacontenttype": "text/plain"}, "ce-datacontenttype"),
    ("attribute named data", {**BINARY, "ce-data": "x"}, "reserved"),
    ("bad attribute name", {**BINARY, "ce-my_ext": "x"}, "lower-case ASCII letters and digits"),
    ("bad media type", {**BINARY, "content-type": "text"}, "not a media type"),
    (
        "repeated attribute",
        Headers(raw=[*((k.encode(), v.encode()) for k, v in BINARY.items()), (b"ce-id", b"2")]),
        "more than once",
    ),
    (
        "repeated Content-Type",
        Headers(
            raw=[
                *((k.encode(), v.encode()) for k, v in BINARY.items()),
                (b"content-type", b"a/b"),
                (b"content-type", b"c/d"),
            ]
        ),
        "Content-Type header appears more than once",
    ),
]


@pytest.mark.parametrize(
    ("headers", "problem"), [case[1:] for case in BINARY_REJECTIONS], ids=[case[0] for case in BINARY_REJECTIONS]
)
def test_binary_mode_rejections(headers: Any, problem: str) -> None:
    error = rejection(headers)
    assert error.status == 400
    assert problem in error.message


STRUCTURED_REJECTIONS: list[tuple[str, bytes, str]] = [
    ("empty body", b"", "empty"),
    ("not JSON", b"{oops", "not valid JSON"),
    ("not UTF-8", b'{"id":"\xff"}', "not UTF-8"),
    ("an array", b"[]", "must be a JSON object, got an array"),
    ("a string", b'"{}"', "must be a JSON object, got a string"),
    ("null", b"null", "must be a JSON object, got null"),
    ("trailing text", structured() + b"{}", "more text after the object"),
    ("trailing comma", structured()[:-1] + b",}", "expected a member name"),
    ("NaN", structured()[:-1] + b',"x":NaN}', "NaN is not a JSON value"),
    ("repeated member", structured()[:-1] + b',"id":"again"}', "'id' appears more than once"),
    ("deep nesting", structured()[:-1] + b',"data":' + b"[" * 100_000 + b"}", "nested too deeply"),
    ("nesting past Knative's limit", structured()[:-1] + b',"data":' + b"[" * 10_001 + b"]" * 10_001 + b"}", "10000"),
    ("a long integer as an extension", structured()[:-1] + b',"ext":' + b"9" * 5000 + b"}", "32-bit"),
    ("missing id", json.dumps({k: v for k, v in REQUIRED.items() if k != "id"}).encode(), "'id' is missing"),
    ("null id", structured(id=None), "'id' is missing"),
    (
        "missing specversion",
        json.dumps({k: v for k, v in REQUIRED.items() if k != "specversion"}).encode(),
        "'specversion' is missing",
    ),
    ("numeric specversion", structured(specversion=1.0), "'specversion' must be a string, got a non-integer number"),
    ("numeric id", structured(id=1), "'id' must be a string, got a number"),
    ("boolean subject", structured(subject=True), "'subject' must be a string, got a boolean"),
    ("numeric time", structured(time=1522949460), "'time' must be a string"),
    ("float extension", structured(ext=5.0), "'ext' must be a string, integer or boolean, got a non-integer number"),
    ("object extension", structured(ext={"a": 1}), "got an object"),
    ("array extension", structured(ext=[1]), "got an array"),
    ("integer beyond 32 bits", structured(ext=2**31), "32-bit"),
    ("upper-case name", structured(Ext="x"), "'Ext' must be lower-case"),
    ("lone surrogate", structured()[:-1] + b',"ext":"\\udead"}', "U+DEAD"),
    ("data and data_base64", structured(data="a", data_base64="YQ=="), "both 'data' and 'data_base64'"),
    ("bad base64", structured(data_base64="not base64!"), "not valid base64"),
    ("numeric data_base64", structured(data_base64=1), "'data_base64' must be a string"),
    ("object data with XML type", structured(datacontenttype="application/xml", data={"a": 1}), "must be a string"),
    ("bad datacontenttype", structured(datacontenttype="json", data=1), "not a media type"),
]


@pytest.mark.parametrize(
    ("body", "problem"), [case[1:] for case in STRUCTURED_REJECTIONS], ids=[case[0] for case in STRUCTURED_REJECTIONS]
)
def test_structured_mode_rejections(body: bytes, problem: str) -> None:
    error = rejection(STRUCTURED, body)
    assert error.status == 400
    assert problem in error.message
    assert "sys." not in error.message, "a message names Python internals"


# What Knative's broker (Go's encoding/json) reads and Python's stdlib alone would not: numbers of any length (Python
# converts at most 4300 digits), nesting to 10,000 (Python's recursion limit is near 1000). Accepted, data as sent.
KNATIVE_READS = {
    "a 5,000-digit number": b"9" * 5000,
    "a negative 5,000-digit number with a fraction": b"-" + b"1" * 5000 + b".5e10",
    "data nested 10,000 deep": b"[" * 10_000 + b"]" * 10_000,
    "objects nested 5,000 deep": b'{"a":' * 5000 + b"[1, true, null, {}]" + b"}" * 5000,
}


@pytest.mark.parametrize("data", KNATIVE_READS.values(), ids=KNATIVE_READS)
def test_what_knatives_json_reader_takes_is_accepted_with_its_bytes(data: bytes) -> None:
    event = parse(STRUCTURED, structured()[:-1] + b',"data":' + data + b"}")
    assert event.data == data
    headers, body = to_http(event, "structured")
    assert parse(headers, body).data == data


@pytest.mark.parametrize(
    ("content_type", "problem"),
    [
        ("application/cloudevents+avro", "structured format 'application/cloudevents+avro' is not supported"),
        ("application/cloudevents", "is not supported"),
        ("application/cloudevents+xml; charset=utf-8", "is not supported"),
        ("application/cloudevents-batch+json", "batched CloudEvents"),
        ("application/cloudevents+json; charset=iso-8859-1", "must be UTF-8"),
    ],
)
def test_formats_not_understood_get_415(content_type: str, problem: str) -> None:
    error = rejection({**BINARY, "content-type": content_type}, structured())
    assert error.status == 415
    assert problem in error.message


# --- the log block ----------------------------------------------------------------------------------------


def test_describe_lists_attributes_extensions_and_data() -> None:
    attributes: dict[str, str | int | bool] = {
        "flag": True,
        "sequence": 3,
        "authtoken": "s3cret",
        "datacontenttype": "text/plain",
    }
    event = Event({**REQUIRED, **attributes}, b"hello")
    text = describe(event)
    assert text.splitlines()[0] == "Event received: Context Attributes,"
    assert "  id: A234-1234-1234" in text
    # Extensions not known to be safe are named, their values masked.
    assert "Extensions,\n  authtoken: ***\n  flag: ***\n  sequence: 3" in text
    assert "s3cret" not in text
    assert text.endswith("Data,\n  hello")


@pytest.mark.parametrize("where", ["subject", "data"])
def test_describe_keeps_every_client_value_on_its_line(where: str) -> None:
    forged = "hi\n00:00:00 second INFO    processed event FORGED\r\u2028\x1b[2J"
    event = Event({**REQUIRED, "subject": forged}) if where == "subject" else Event(dict(REQUIRED), forged.encode())
    text = describe(event)
    assert not any("processed event FORGED" in line and not line.startswith("  ") for line in text.splitlines())
    assert "\\x0a00:00:00 second INFO    processed event FORGED\\x0d\\u2028\\x1b[2J" in text


def test_describe_bounds_large_and_binary_data() -> None:
    large = describe(Event(dict(REQUIRED), "é".encode() * 10_000))
    assert len(large) < 6000 and "(20000 bytes in all)" in large
    assert "(base64) AP8=" in describe(Event(dict(REQUIRED), b"\x00\xff"))


# --- Postel: what Knative's broker (CloudEvents sdk-go) accepts is accepted, and the leniency is said -------

LENIENT: list[tuple[str, Any, bytes, str, bytes]] = [
    # (case, headers, body, what the leniency note says, the data kept)
    ("source with a space", {**BINARY, "ce-source": "my%20source"}, b"x", "' ' must be percent-encoded", b"x"),
    ("source with a colon first", {**BINARY, "ce-source": "1:2"}, b"x", "not a scheme", b"x"),
    ("source with a bare %", {**BINARY, "ce-source": "%2541%25"}, b"x", "'%'", b"x"),
    ("dataschema with a space", {**BINARY, "ce-dataschema": "http://x/a%20b"}, b"x", "' ' must be", b"x"),
    *[
        (
            f"charset={charset}",
            STRUCTURED,
            structured(datacontenttype=f"text/plain; charset={charset}", data=text),
            f"charset {charset!r}",
            text.encode(),
        )
        for charset, text in [("nope", "x"), ("idna", "a..b"), ("undefined", "x"), ("rot13", "x"), ("us-ascii", "é")]
    ],
]


@pytest.mark.parametrize(
    ("headers", "body", "note", "data"), [case[1:] for case in LENIENT], ids=[case[0] for case in LENIENT]
)
def test_what_knative_accepts_is_accepted_and_noted(headers: Any, body: bytes, note: str, data: bytes) -> None:
    event = parse(headers, body)
    assert len(event.lenient) == 1, event.lenient
    assert note in event.lenient[0]
    assert event.data == data
