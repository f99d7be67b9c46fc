"""Proximity beacons in manufacturer data: Apple's iBeacon, the shopper app's token, AltBeacon."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from storelink.tokens import token_ref

APPLE_COMPANY_ID = 0x004C
# Type 0x02 and length 0x15 (21 bytes: UUID, major, minor, measured power) mark an iBeacon
# among Apple's other manufacturer data (Nearby Info, AirDrop, Handoff, ...).
_IBEACON_PREFIX = b"\x02\x15"
_IBEACON_BYTES = 23
# Unlike the GAP fields around them, major and minor are big-endian; measured power is signed.
_MAJOR_MINOR_POWER = struct.Struct(">HHb")

# AltBeacon (github.com/AltBeacon/spec): under any company identifier, the beacon code 0xBEAC,
# a 20-byte beacon id, the reference RSSI at 1 m (signed) and a manufacturer-reserved byte.
ALTBEACON_CODE = b"\xbe\xac"
_ALTBEACON_BYTES = 24
_ID_BYTES = 20


def _dashed(digits: str) -> str:
    """What str(UUID(hex=digits)) gives, four times faster (bench/gateway.py)."""
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def _ibeacon_json(fmt: str, uuid: str, major: int, minor: int, power: int) -> dict[str, Any]:
    """The fields `storelink gateway decode` prints for an iBeacon-shaped frame."""
    return {"format": fmt, "uuid": uuid, "major": major, "minor": minor, "tx_power": power}


@dataclass(frozen=True, slots=True)
class IBeacon:
    format: ClassVar[str] = "ibeacon"

    uuid: str
    """Lower-case with dashes."""
    major: int
    minor: int
    measured_power: int
    """The RSSI the transmitter claims at 1 m, in dBm."""

    @property
    def beacon_id(self) -> str:
        """``uuid:major:minor``, the form of the ``store_beacons`` setting."""
        return f"{self.uuid}:{self.major}:{self.minor}"

    def to_json(self) -> dict[str, Any]:
        return _ibeacon_json(self.format, self.uuid, self.major, self.minor, self.measured_power)


@dataclass(frozen=True, slots=True)
class AppToken:
    """The shopper app's iBeacon: the retailer's proximity UUID, major and minor the token."""

    format: ClassVar[str] = "app_token"

    uuid: str
    major: int
    minor: int
    measured_power: int

    @property
    def ref(self) -> str:
        """The current rotating token (docs/protocol.md), which only the cloud can resolve."""
        return token_ref(self.major, self.minor)

    def to_json(self) -> dict[str, Any]:
        fields = _ibeacon_json(self.format, self.uuid, self.major, self.minor, self.measured_power)
        return {**fields, "ref": self.ref}


@dataclass(frozen=True, slots=True)
class AltBeacon:
    format: ClassVar[str] = "altbeacon"

    company_id: int
    """The beacon maker's Bluetooth SIG company identifier."""
    identifier: str
    """The specification's 20-byte BEACON ID, 40 lower-case hex digits."""
    reference_rssi: int
    """The RSSI at 1 m, in dBm."""
    mfg_reserved: int

    @property
    def uuid(self) -> str:
        """The first 16 bytes of the id, read as a UUID (the usual id1/id2/id3 layout)."""
        return _dashed(self.identifier[:32])

    @property
    def major(self) -> int:
        return int(self.identifier[32:36], 16)

    @property
    def minor(self) -> int:
        return int(self.identifier[36:40], 16)

    @property
    def beacon_id(self) -> str:
        """``uuid:major:minor``, the form of the ``store_beacons`` setting, as for an iBeacon."""
        return f"{self.uuid}:{self.major}:{self.minor}"

    @property
    def measured_power(self) -> int:
        return self.reference_rssi

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "company_id": self.company_id,
            "beacon_id": self.identifier,
            "uuid": self.uuid,
            "major": self.major,
            "minor": self.minor,
            "tx_power": self.reference_rssi,
            "mfg_reserved": self.mfg_reserved,
        }


def decode_ibeacon(manufacturer_data: Mapping[int, bytes]) -> IBeacon | None:
    """The iBeacon in Apple's manufacturer data, if that is what it holds."""
    payload = manufacturer_data.get(APPLE_COMPANY_ID)
    if payload is None or len(payload) != _IBEACON_BYTES or payload[:2] != _IBEACON_PREFIX:
        return None
    major, minor, measured_power = _MAJOR_MINOR_POWER.unpack_from(payload, 18)
    return IBeacon(_dashed(payload[2:18].hex()), major, minor, measured_power)


def decode_altbeacon(company_id: int, payload: bytes) -> AltBeacon | None:
    if len(payload) != _ALTBEACON_BYTES or payload[:2] != ALTBEACON_CODE:
        return None
    reference_rssi = payload[22] - 256 if payload[22] >= 128 else payload[22]
    return AltBeacon(company_id, payload[2 : 2 + _ID_BYTES].hex(), reference_rssi, payload[23])
