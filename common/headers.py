"""Header logging that never shows a secret value."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

MASK = "***"
_SECRET_NAMES = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
_SECRET_WORDS = ("key", "token", "secret", "password", "credential", "session")


# Both run for every header of every request that first logs; header names repeat, so each is worked out once
# (86 -> 11 us per header block in docs/bench.md). Bounded: callers choose the names.
@lru_cache(maxsize=1024)
def is_secret(name: str) -> bool:
    lower = name.lower()
    return lower in _SECRET_NAMES or any(word in lower for word in _SECRET_WORDS)


@lru_cache(maxsize=1024)
def _canonical(name: str) -> str:
    # The article's Go output shows canonical MIME header names (Traceparent, X-B3-Traceid).
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def format_headers(title: str, headers: Iterable[tuple[str, str]]) -> str:
    """`title` then one `Name: value` a line, like the article; secret values masked, names kept."""
    lines = [title]
    for name, value in sorted(headers, key=lambda item: item[0].lower()):
        shown = MASK if is_secret(name) else value
        lines.append(f"\t{_canonical(name)}: {shown}")
    return "\n".join(lines)
