"""Header logging: the article's layout, and no secret value ever shown."""

from __future__ import annotations

import pytest

from plugins.header_logging import MASK, format_headers, is_secret


@pytest.mark.parametrize(
    "name",
    [
        "Authorization",
        "proxy-authorization",
        "Cookie",
        "SET-COOKIE",
        "X-Api-Key",
        "x-auth-token",
        "X-Client-Secret",
        "apikey",
        "X-Amz-Security-Token",
        # Missed by the fixed list this replaced:
        "X-Auth",
        "X-Forwarded-Authorization",
        "Authentication",
        "X-Goog-Iap-Jwt-Assertion",
        "baggage",
        "X-Csrf-Token",
    ],
)
def test_secret_headers_are_masked_but_named(name: str) -> None:
    text = format_headers("Request headers:", [(name, "s3cr3t-value"), ("Accept", "*/*")])
    assert is_secret(name)
    assert "s3cr3t-value" not in text
    assert f": {MASK}" in text
    assert f"{name.lower()}: {MASK}" in text.lower()


@pytest.mark.parametrize("name", ["Accept", "Traceparent", "X-B3-Traceid", "Content-Type", "User-Agent", "Host"])
def test_ordinary_headers_are_shown(name: str) -> None:
    assert not is_secret(name)
    assert "value-1" in format_headers("Request headers:", [(name, "value-1")])


def test_layout_matches_the_article() -> None:
    text = format_headers(
        "Request headers:", [("x-b3-traceid", "abc"), ("accept", "text/html"), ("traceparent", "00-1-2-01")]
    )
    assert text.splitlines() == [
        "Request headers:",
        "\tAccept: text/html",
        "\tTraceparent: 00-1-2-01",
        "\tX-B3-Traceid: abc",
    ]


@pytest.mark.parametrize("value", ["Bearer abc.def", "basic dXNlcjpwYXNz", "eyJhbGciOiJIUzI1NiJ9.e30.sig"])
def test_credential_values_are_masked_whatever_the_header(value: str) -> None:
    text = format_headers("Request headers:", [("X-Innocent", value), ("Traceparent", "00-1-2-01")])
    assert value not in text
    assert "\tX-Innocent: ***" in text
    assert "\tTraceparent: 00-1-2-01" in text


def test_names_and_values_stay_on_their_line() -> None:
    text = format_headers("Request headers:", [("X-Note", "a\r\n00:00:00 first INFO forged"), ("Accept", "\u2028x")])
    assert text.splitlines() == [
        "Request headers:",
        "\tAccept: \\u2028x",
        "\tX-Note: a\\x0d\\x0a00:00:00 first INFO forged",
    ]
