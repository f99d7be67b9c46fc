"""Google's Eddystone frames (github.com/google/eddystone), in service data for UUID 0xFEAA.

The first byte of the service data is the frame type: UID 0x00, URL 0x10, TLM 0x20 (version 0x00
plain, 0x01 encrypted), EID 0x30. Multi-byte fields are big-endian. A frame whose length or
fields break the specification is not decoded (None), so that a wrong value never looks right.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, ClassVar

EDDYSTONE_SERVICE_UUID = "0000feaa-0000-1000-8000-00805f9b34fb"

UID_FRAME = 0x00
URL_FRAME = 0x10
TLM_FRAME = 0x20
EID_FRAME = 0x30

TLM_PLAIN = 0x00
TLM_ENCRYPTED = 0x01

# Eddystone calibrates its TX power at 0 m; the specification's rule of thumb is 41 dB lost over
# the first metre, which gives the RSSI at 1 m that iBeacon and AltBeacon advertise.
LOSS_AT_1M_DB = 41

URL_SCHEMES = ("http://www.", "https://www.", "http://", "https://")
URL_EXPANSIONS = (
    ".com/",
    ".org/",
    ".edu/",
    ".net/",
    ".info/",
    ".biz/",
    ".gov/",
    ".com",
    ".org",
    ".edu",
    ".net",
    ".info",
    ".biz",
    ".gov",
)
URL_MAX_ENCODED_BYTES = 17
# Printable US-ASCII stands for itself; 0x0E-0x20 and 0x7F-0xFF are reserved.
_URL_FIRST_CHAR, _URL_LAST_CHAR = 0x21, 0x7E

_UID_BYTES = 20  # frame type, TX power, 10-byte namespace, 6-byte instance, 2 reserved bytes
_UID_BYTES_TRUNCATED = 18  # "existing implementations that truncate the frame" (the spec)
_TLM_BYTES = 14
_ETLM_BYTES = 18  # frame type, version, 12 encrypted bytes, 2-byte salt, 2-byte MIC
_EID_BYTES = 10  # frame type, TX power, 8-byte ephemeral id
_TLM = struct.Struct(">HhII")
# Temperature 0x8000 (-128 °C) means the beacon has no sensor; battery 0 means not measured.
_NO_TEMPERATURE = -0x8000


def _signed(byte: int) -> int:
    return byte - 256 if byte >= 128 else byte


@dataclass(frozen=True, slots=True)
class EddystoneUID:
    format: ClassVar[str] = "eddystone_uid"

    namespace: str
    """10 bytes, 20 lower-case hex digits."""
    instance: str
    """6 bytes, 12 lower-case hex digits."""
    tx_power: int
    """Calibrated TX power at 0 m, dBm."""

    @property
    def beacon_id(self) -> str:
        """``namespace:instance``, the form of the ``store_beacons`` setting."""
        return f"{self.namespace}:{self.instance}"

    @property
    def measured_power(self) -> int:
        return self.tx_power - LOSS_AT_1M_DB

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "namespace": self.namespace,
            "instance": self.instance,
            "tx_power": self.tx_power,
        }


@dataclass(frozen=True, slots=True)
class EddystoneURL:
    format: ClassVar[str] = "eddystone_url"

    url: str
    tx_power: int

    @property
    def measured_power(self) -> int:
        return self.tx_power - LOSS_AT_1M_DB

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "url": self.url, "tx_power": self.tx_power}


@dataclass(frozen=True, slots=True)
class EddystoneTLM:
    """Unencrypted telemetry (version 0)."""

    format: ClassVar[str] = "eddystone_tlm"

    battery_mv: int | None
    """None when the beacon does not measure it (USB-powered: the field is 0)."""
    temperature_c: float | None
    """Signed 8.8 fixed point on air; None when the beacon has no sensor (0x8000)."""
    adv_count: int
    """Advertising PDUs sent since power-on or reboot."""
    uptime_s: float
    """Time since power-on or reboot; counted on air in 0.1 s."""

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "battery_mv": self.battery_mv,
            "temperature_c": self.temperature_c,
            "adv_count": self.adv_count,
            "uptime_s": self.uptime_s,
        }


@dataclass(frozen=True, slots=True)
class EddystoneETLM:
    """Encrypted telemetry (version 1), forwarded opaque: only the beacon's owner can read it."""

    format: ClassVar[str] = "eddystone_etlm"

    etlm: str
    """12 encrypted bytes, hex."""
    salt: str
    mic: str

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "etlm": self.etlm, "salt": self.salt, "mic": self.mic}


@dataclass(frozen=True, slots=True)
class EddystoneEID:
    """An ephemeral id that rotates; only its registrar can resolve it. Forwarded opaque."""

    format: ClassVar[str] = "eddystone_eid"

    eid: str
    """8 bytes, hex."""
    tx_power: int

    @property
    def measured_power(self) -> int:
        return self.tx_power - LOSS_AT_1M_DB

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "eid": self.eid, "tx_power": self.tx_power}


EddystoneFrame = EddystoneUID | EddystoneURL | EddystoneTLM | EddystoneETLM | EddystoneEID


def decode_url(scheme: int, encoded: bytes) -> str | None:
    """The URL from its scheme prefix byte and encoded body; None if either is invalid."""
    if scheme >= len(URL_SCHEMES) or len(encoded) > URL_MAX_ENCODED_BYTES:
        return None
    parts = [URL_SCHEMES[scheme]]
    for byte in encoded:
        if byte < len(URL_EXPANSIONS):
            parts.append(URL_EXPANSIONS[byte])
        elif _URL_FIRST_CHAR <= byte <= _URL_LAST_CHAR:
            parts.append(chr(byte))
        else:
            return None
    return "".join(parts)


def decode_eddystone(data: bytes) -> EddystoneFrame | None:
    """The frame in Eddystone service data (the bytes after the 0xFEAA UUID)."""
    if not data:
        return None
    frame_type, size = data[0], len(data)
    if frame_type == UID_FRAME:
        if size == _UID_BYTES_TRUNCATED or (size == _UID_BYTES and data[18:] == b"\0\0"):
            return EddystoneUID(data[2:12].hex(), data[12:18].hex(), _signed(data[1]))
        return None
    if frame_type == URL_FRAME:
        if size < 3:
            return None
        url = decode_url(data[2], data[3:])
        return None if url is None else EddystoneURL(url, _signed(data[1]))
    if frame_type == TLM_FRAME:
        if size == _TLM_BYTES and data[1] == TLM_PLAIN:
            battery, temperature, adv_count, ticks = _TLM.unpack_from(data, 2)
            return EddystoneTLM(
                battery_mv=battery or None,
                temperature_c=None if temperature == _NO_TEMPERATURE else temperature / 256,
                adv_count=adv_count,
                uptime_s=ticks / 10,
            )
        if size == _ETLM_BYTES and data[1] == TLM_ENCRYPTED:
            return EddystoneETLM(data[2:14].hex(), data[14:16].hex(), data[16:18].hex())
        return None
    if frame_type == EID_FRAME and size == _EID_BYTES:
        return EddystoneEID(data[2:10].hex(), _signed(data[1]))
    return None
