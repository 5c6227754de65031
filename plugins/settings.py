"""Settings every service reads from the environment, validated once at start-up."""

from __future__ import annotations

import os
import sys
from typing import NoReturn, TypeVar

N = TypeVar("N", int, float)


def fail_startup(message: str) -> NoReturn:
    """Stop with a message naming the setting at fault, instead of a traceback."""
    print(f"error: {message}", file=sys.stderr)  # noqa: T201 - logging may not be configured yet
    raise SystemExit(2)


def env_str(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def _env_number(name: str, default: N, minimum: N, parse: type[N], what: str) -> N:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = parse(raw)
    except ValueError:
        fail_startup(f"{name}={raw!r} is not {what}")
    if value < minimum:
        fail_startup(f"{name}={raw!r} must be >= {minimum}")
    return value


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    return _env_number(name, default, minimum, float, "a number")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    return _env_number(name, default, minimum, int, "a whole number")


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    fail_startup(f"{name}={raw!r} must be true or false")


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default).lower()
    if value not in choices:
        fail_startup(f"{name}={value!r} must be one of: {', '.join(choices)}")
    return value
