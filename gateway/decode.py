"""Decoding the advertising frames the gateway understands. Never raises on radio garbage."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

APPLE_COMPANY_ID = 0x004C
# Type 0x02 and length 0x15 (21 bytes: UUID, major, minor, measured power) mark an iBeacon
# among Apple's other manufacturer data (Nearby Info, AirDrop, Handoff, ...).
_IBEACON_PREFIX = b"\x02\x15"
_IBEACON_BYTES = 23
# Unlike the GAP fields around them, major and minor are big-endian; measured power is signed.
_MAJOR_MINOR_POWER = struct.Struct(">HHb")


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
    # What str(UUID(bytes=...)) gives, four times faster (bench/gateway.py).
    digits = payload[2:18].hex()
    major, minor, measured_power = _MAJOR_MINOR_POWER.unpack_from(payload, 18)
    return IBeacon(
        uuid=f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}",
        major=major,
        minor=minor,
        measured_power=measured_power,
    )
