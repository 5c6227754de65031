"""The HTTP client a service keeps for its whole life: keep-alive connections, TLS set up only when needed."""

from __future__ import annotations

import ssl
from collections.abc import Iterable

import httpx


def new_client(destinations: Iterable[str], timeout: httpx.Timeout | float) -> httpx.AsyncClient:
    """A client for `destinations` (URLs). Loading the CA bundle costs about 50 ms and 2 MB at start-up (the
    cold start Knative pays on a scale from zero, docs/bench.md); destinations that are all plain http (the
    in-cluster default: broker ingress, Trigger subscribers) never use it. Their client gets a context that
    verifies but trusts no CA, so an https connection would fail closed, never go unverified."""
    tls = any(url.lower().startswith("https://") for url in destinations)
    verify: bool | ssl.SSLContext = True if tls else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return httpx.AsyncClient(timeout=timeout, verify=verify)
