"""The gateway's health as published on its retained status topic."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from gateway.config import GatewaySettings
from storelink.wire import GatewayState, GatewayStatus

logger = logging.getLogger(__name__)

# Where Linux puts the SoC temperature on a Raspberry Pi, in millidegrees Celsius.
CPU_THERMAL_PATH = Path("/sys/class/thermal/thermal_zone0/temp")
CONFIG_ERROR_MAX_CHARS = 1000


@dataclass
class GatewayCounters:
    adverts_seen: int = 0
    events_published: int = 0
    decode_errors: int = 0
    """Adverts that could not be processed, whatever the reason; each is dropped."""
    scanner_restarts: int = 0
    """Times the watchdog restarted a scanner that had gone silent."""
    passers_by: int = 0
    """Devices heard that never came into a zone (``gateway.passers``)."""


def gateway_version() -> str:
    try:
        return version("storelink")
    except PackageNotFoundError:
        return ""


def read_cpu_temp_c(path: Path = CPU_THERMAL_PATH) -> float | None:
    """The SoC temperature in °C, or None where the system does not expose it."""
    try:
        return round(int(path.read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


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
        scanner_restarts=counters.scanner_restarts,
        passers_by=counters.passers_by,
    )


class Heartbeat:
    """Builds the periodic status: counters, advert rate, uptime, CPU temperature and which
    remote config is in use (or why the latest one was rejected)."""

    def __init__(
        self,
        settings: GatewaySettings,
        started_at: float,
        *,
        thermal_path: Path = CPU_THERMAL_PATH,
    ) -> None:
        self._settings = settings
        self.started_at = started_at
        self._thermal_path = thermal_path
        self._rate_since = started_at
        self._rate_adverts = 0
        self.config_version: int | None = None
        self.config_error: str | None = None

    def config_applied(self, version: int) -> None:
        self.config_version, self.config_error = version, None

    def config_rejected(self, reason: str) -> None:
        self.config_error = reason[:CONFIG_ERROR_MAX_CHARS]

    def status(
        self, state: GatewayState, now: float, counters: GatewayCounters, *, sample: bool = True
    ) -> GatewayStatus:
        """The status now; ``sample`` False leaves the advert rate's window open (a status sent
        between heartbeats, such as a config rejection)."""
        elapsed = now - self._rate_since
        rate = (counters.adverts_seen - self._rate_adverts) / elapsed if elapsed > 0 else 0.0
        if sample:
            self._rate_since, self._rate_adverts = now, counters.adverts_seen
        return make_status(self._settings, state, now, counters).model_copy(
            update={
                "uptime_s": round(max(0.0, now - self.started_at), 1),
                "adverts_per_s": round(max(0.0, rate), 2),
                "cpu_temp_c": read_cpu_temp_c(self._thermal_path),
                "config_version": self.config_version,
                "config_error": self.config_error,
            }
        )
