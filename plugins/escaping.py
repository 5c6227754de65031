"""Client values made safe for a log line: escaped so that they cannot add or hide a line, cut so that they
cannot flood it, and the mask credentials are replaced with."""

from __future__ import annotations

import re

VALUE_LIMIT = 1024
"""The most characters of one client-controlled value a log line shows; the rest is summarised."""
MASK = "***"
# What could end a line or hide text in a terminal or a log viewer: C0/C1 controls (CR, LF, ESC...), Unicode
# line and paragraph separators, zero-width and bidirectional controls, the BOM, lone surrogates; and the
# backslash, so that an escape sequence cannot be faked. Everything else (accents, emoji) stays readable.
_UNSAFE = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ud800-\udfff]")


class Block(str):
    """A multi-line log text assembled from escaped values: the escaping filter leaves it as it is."""


def escape(value: object, limit: int = VALUE_LIMIT) -> str:
    """`value` as text that stays on its line: cut at `limit` characters (the cut said), then every character
    that is not printable (and the backslash, so an escape cannot be faked) written as a Python escape."""
    text = value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)
    cut = ""
    if len(text) > limit:
        cut = f"... ({len(text)} characters in all)"
        text = text[:limit]
    return _UNSAFE.sub(_escaped, text) + cut


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code == 0x5C:
        return "\\\\"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
