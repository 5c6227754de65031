"""The broker's own settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from broker.dead_letters import DeadLetterFile
from broker.triggers import ConfigError, Routing, load_routing, parse_subscribers
from plugins.server import shutdown_timeout
from plugins.settings import env_float, env_str, fail_startup

DEFAULT_SUBSCRIBERS = "second=http://127.0.0.1:8081"


@dataclass(frozen=True)
class Settings:
    routing: Routing
    delivery_timeout: float
    """Per-attempt timeout when a Trigger sets no `delivery.timeout`."""
    drain_timeout: float
    """How long shutdown waits for deliveries under way."""
    dead_letters: DeadLetterFile
    """Where every event the broker gives up on is kept (DEAD_LETTER_FILE)."""

    @classmethod
    def from_env(cls) -> Settings:
        config = Path(env_str("BROKER_CONFIG", "config"))
        if not config.exists():
            fail_startup(f"BROKER_CONFIG={str(config)!r}: no such file or folder (the Trigger manifests)")
        try:
            subscribers = parse_subscribers(env_str("BROKER_SUBSCRIBERS", DEFAULT_SUBSCRIBERS))
            routing = load_routing(config, subscribers)
        except ConfigError as exc:
            fail_startup(str(exc))
        return cls(
            routing=routing,
            delivery_timeout=env_float("DELIVERY_TIMEOUT", 5.0, minimum=0.01),
            drain_timeout=float(shutdown_timeout()),
            dead_letters=DeadLetterFile.from_env(),
        )
