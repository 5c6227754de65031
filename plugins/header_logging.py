"""Header logging that never shows a credential and cannot be forged.

A value is shown only when its header is on the allow-list of headers known to carry no credential (trace
context, content negotiation, the CloudEvents attributes that are not extensions), or when its name does not
look like one that carries a credential (`_CREDENTIAL_NAME`) and the value does not look like one either (an
HTTP authentication scheme, a JWT). Everything else is masked, the name kept. Names and shown values are
escaped and cut (plugins/escaping.py), so a header cannot add a line to the log.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import TypeVar

from plugins.escaping import MASK, Block, escape
from plugins.propagators import TRACE_HEADERS

__all__ = ["MASK", "format_headers", "is_secret"]

SHOWN: frozenset[str] = frozenset(
    {
        # Trace context: what the demo is about.
        *TRACE_HEADERS,
        # CloudEvents binary mode: the attributes the spec defines (extensions are masked: plugins/cloudevents.py).
        "ce-id",
        "ce-source",
        "ce-specversion",
        "ce-type",
        "ce-subject",
        "ce-time",
        "ce-dataschema",
        # HTTP itself.
        "accept",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "connection",
        "content-length",
        "content-type",
        "date",
        "host",
        "user-agent",
    }
)
# Names that carry credentials, whatever the prefix: Authorization, Proxy-Authorization, X-Forwarded-Authorization,
# Authentication, X-Auth, X-Api-Key, X-Goog-Iap-Jwt-Assertion, Cookie, X-Csrf-Token... `baggage` is masked too: a
# caller can put anything in it.
_CREDENTIAL_NAME = re.compile(
    r"auth|cookie|token|key|secret|passw|pwd|credential|session|jwt|assertion|signature|csrf|xsrf|bearer|api|"
    r"private|saml|oidc|baggage|otp|pin$|card"
)
# Values that are credentials whatever the header: an authentication scheme with its parameters, or a JWT.
_CREDENTIAL_VALUE = re.compile(
    r"\s*(?:(?:basic|bearer|digest|negotiate|ntlm|aws4-hmac-sha256)\s|ey[A-Za-z0-9_-]{8,}\.)", re.IGNORECASE
)


# Header names repeat on every request, so each is judged once (86 -> 11 us per header block in docs/bench.md).
# Bounded in bytes, not only in entries: a name can be near MAX_HEADER_BYTES long (64 KiB), and 1024 such names
# held 60 MB (issue 21). Only names up to CACHED_NAME_LENGTH characters are cached (every real header name is
# far shorter), so the two caches hold at most 2 x 1024 x 64 characters; a longer name is judged afresh each time.
CACHED_NAME_LENGTH = 64
T = TypeVar("T")


def _cached_for_short_names(judge: Callable[[str], T]) -> Callable[[str], T]:
    """`judge`, remembered for up to 1024 names of at most CACHED_NAME_LENGTH characters."""
    cached = lru_cache(maxsize=1024)(judge)
    return lambda name: cached(name) if len(name) <= CACHED_NAME_LENGTH else judge(name)


@_cached_for_short_names
def is_secret(name: str) -> bool:
    """Whether a header of this name may carry a credential (its value is never shown)."""
    lower = name.lower()
    return lower not in SHOWN and _CREDENTIAL_NAME.search(lower) is not None


@_cached_for_short_names
def _canonical(name: str) -> str:
    # The article's Go output shows canonical MIME header names (Traceparent, X-B3-Traceid).
    return escape("-".join(part[:1].upper() + part[1:].lower() for part in name.split("-")), 256)


def shown_value(name: str, value: str) -> str:
    """`value` as a log may show it: masked if it may be a credential, else escaped and cut."""
    if is_secret(name) or (name.lower() not in SHOWN and _CREDENTIAL_VALUE.match(value)):
        return MASK
    return escape(value)


def format_headers(title: str, headers: Iterable[tuple[str, str]]) -> Block:
    """`title` then one `Name: value` a line, like the article; credentials masked, names kept."""
    lines = [title]
    for name, value in sorted(headers, key=lambda item: item[0].lower()):
        lines.append(f"\t{_canonical(name)}: {shown_value(name, value)}")
    return Block("\n".join(lines))
