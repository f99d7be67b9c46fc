"""The gateway's health as published on its retained status topic."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version

from gateway.config import GatewaySettings
from storelink.wire import GatewayState, GatewayStatus


@dataclass
class GatewayCounters:
    adverts_seen: int = 0
    events_published: int = 0
    decode_errors: int = 0
    """Adverts that could not be processed, whatever the reason; each is dropped."""


def gateway_version() -> str:
    try:
        return version("storelink")
    except PackageNotFoundError:
        return ""


def make_status(
    settings: GatewaySettings,
    state: GatewayState,
    now: float,
    counters: GatewayCounters | None = None,
) -> GatewayStatus:
    counters = counters or GatewayCounters()
    return GatewayStatus(
        store_id=settings.store_id,
        gateway_id=settings.gateway_id,
        state=state,
        ts=datetime.fromtimestamp(now, UTC),
        version=gateway_version(),
        adverts_seen=counters.adverts_seen,
        events_published=counters.events_published,
        decode_errors=counters.decode_errors,
    )
