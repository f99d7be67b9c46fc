"""Decoding the advertising frames the gateway understands. Never raises on radio garbage."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from uuid import UUID

APPLE_COMPANY_ID = 0x004C
# Type 0x02 and length 0x15 (21 bytes: UUID, major, minor, measured power) mark an iBeacon
# among Apple's other manufacturer data (Nearby Info, AirDrop, Handoff, ...).
_IBEACON_PREFIX = b"\x02\x15"
_IBEACON_BYTES = 23


@dataclass(frozen=True)
class IBeacon:
    uuid: str
    """Lower-case with dashes."""
    major: int
    minor: int
    measured_power: int
    """The RSSI the transmitter claims at 1 m, in dBm."""

    @property
    def beacon_id(self) -> str:
        return f"{self.uuid}:{self.major}:{self.minor}"


def decode_ibeacon(manufacturer_data: Mapping[int, bytes]) -> IBeacon | None:
    payload = manufacturer_data.get(APPLE_COMPANY_ID)
    if payload is None or len(payload) != _IBEACON_BYTES or payload[:2] != _IBEACON_PREFIX:
        return None
    return IBeacon(
        uuid=str(UUID(bytes=bytes(payload[2:18]))),
        major=int.from_bytes(payload[18:20], "big"),
        minor=int.from_bytes(payload[20:22], "big"),
        measured_power=int.from_bytes(payload[22:23], "big", signed=True),
    )
