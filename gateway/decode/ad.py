"""Advertising data (AD structures) as bytes: read from hex, parsed, and rebuilt from fields.

Parsing is bluetooth-data-tools' ``parse_advertisement_data_bytes``, the parser bleak's own
backends and Home Assistant use. It yields the fields bleak's ``AdvertisementData`` carries
(local name, service UUIDs, service data, manufacturer data, TX power), so that an advertisement
read from raw bytes and one bleak reports are decoded by the same code.

Rebuilding: on BlueZ, bleak's ``AdvertisementData`` has no raw bytes, only those fields (BlueZ
parses the advertisement and keeps what it understands, merging scan responses in). Where raw bytes
are needed (the decode cache's key, ``storelink gateway record``) they are rebuilt from the fields
into canonical AD structures (``canonical_ad_bytes``). The rebuilt bytes hold everything the
decoder reads, but not what BlueZ drops (flags, appearance, ...), and not in the order the device
sent them; parsed again, they give the same fields.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from bluetooth_data_tools import parse_advertisement_data_bytes

# Core Specification Supplement, Part A, §1: the AD types bleak's fields come from.
AD_INCOMPLETE_UUID16 = 0x02
AD_COMPLETE_UUID16 = 0x03
AD_COMPLETE_UUID32 = 0x05
AD_COMPLETE_UUID128 = 0x07
AD_COMPLETE_LOCAL_NAME = 0x09
AD_TX_POWER = 0x0A
AD_SERVICE_DATA_UUID16 = 0x16
AD_SERVICE_DATA_UUID32 = 0x20
AD_SERVICE_DATA_UUID128 = 0x21
AD_MANUFACTURER_DATA = 0xFF

# An extended advertisement carries at most 1650 bytes of advertising data (Vol 4, Part E,
# §7.7.65.13); hex beyond that is not one advertisement.
MAX_AD_BYTES = 1650
# The length byte counts the type byte too.
_MAX_AD_DATA = 0xFF - 1
_BASE_UUID_SUFFIX = "-0000-1000-8000-00805f9b34fb"
_HEX_SEPARATORS = re.compile(r"[\s:\-]+")

AdFields = tuple[str | None, list[str], dict[str, bytes], dict[int, bytes], int | None]
"""``(local_name, service_uuids, service_data, manufacturer_data, tx_power)``, as bleak has them."""


class InvalidHexError(ValueError):
    """Text that is not the hex of an advertisement."""


def parse_hex(text: str) -> bytes:
    """Advertising data from hex as btmon, hcidump or a log prints it.

    Whitespace (also across lines), colons and dashes between bytes and a leading ``0x`` are
    ignored: ``02 01 06 1A FF 4C 00 ...``, ``0201061aff4c00...`` and ``02:01:06:...`` all work.
    """
    digits = _HEX_SEPARATORS.sub("", text.strip())
    if digits[:2].lower() == "0x":
        digits = digits[2:]
    if not digits:
        raise InvalidHexError("no advertising data: give the AD structures as hex")
    if len(digits) % 2:
        raise InvalidHexError(f"odd number of hex digits ({len(digits)}): a byte is two digits")
    try:
        raw = bytes.fromhex(digits)
    except ValueError:
        bad = next(c for c in digits if c not in "0123456789abcdefABCDEF")
        raise InvalidHexError(f"not a hex digit: {bad!r}") from None
    if len(raw) > MAX_AD_BYTES:
        raise InvalidHexError(f"{len(raw)} bytes is more than one advertisement ({MAX_AD_BYTES})")
    return raw


def parse_ad(raw: bytes) -> AdFields:
    """The fields of raw advertising data; malformed structures are skipped, never raised.

    The containers are bluetooth-data-tools' cached, shared ones: read them, never change them.
    """
    fields: AdFields = parse_advertisement_data_bytes(raw)
    return fields


@lru_cache(maxsize=1024)
def _uuid_ad(uuid: str) -> tuple[int, bytes]:
    """A service UUID's size class (2, 4 or 16 bytes) and its little-endian bytes."""
    text = uuid.lower()
    if len(text) == 36 and text.endswith(_BASE_UUID_SUFFIX):
        value = int(text[:8], 16)
        if value <= 0xFFFF:
            return 2, value.to_bytes(2, "little")
        return 4, value.to_bytes(4, "little")
    return 16, bytes.fromhex(text.replace("-", ""))[::-1]


_UUID_LIST_TYPE = {2: AD_COMPLETE_UUID16, 4: AD_COMPLETE_UUID32, 16: AD_COMPLETE_UUID128}
_SERVICE_DATA_TYPE = {
    2: AD_SERVICE_DATA_UUID16,
    4: AD_SERVICE_DATA_UUID32,
    16: AD_SERVICE_DATA_UUID128,
}


def _structure(ad_type: int, data: bytes) -> bytes:
    if len(data) > _MAX_AD_DATA:
        raise ValueError(f"{len(data)} bytes do not fit in one AD structure")
    return bytes((len(data) + 1, ad_type)) + data


@lru_cache(maxsize=1024)
def _uuid_lists(service_uuids: tuple[str, ...]) -> bytes:
    lists: dict[int, list[bytes]] = {}
    for uuid in service_uuids:
        size, value = _uuid_ad(uuid)
        lists.setdefault(size, []).append(value)
    return b"".join(
        _structure(_UUID_LIST_TYPE[size], b"".join(lists[size]))
        for size in (2, 4, 16)
        if size in lists
    )


def canonical_ad_bytes(
    local_name: str | None,
    service_uuids: Sequence[str],
    service_data: Mapping[str, Any],
    manufacturer_data: Mapping[int, Any],
    tx_power: int | None,
) -> bytes:
    """AD structures holding exactly these fields, in a fixed order.

    Service UUID lists (16-, 32-, then 128-bit, marked complete), service data, manufacturer data
    (each in the mapping's order), TX power level, complete local name. ``parse_ad`` of the result
    gives the same fields back. Payload values may be bytes, bytearray or memoryview; anything
    else raises (TypeError), as does a payload too long for one AD structure (ValueError).

    On the gateway's hot path (every advert from BlueZ): measured in bench/gateway.py.
    """
    parts: list[bytes] = []
    if service_uuids:
        parts.append(_uuid_lists(tuple(service_uuids)))
    for uuid, data in service_data.items():
        size, value = _uuid_ad(uuid)
        parts.append(_structure(_SERVICE_DATA_TYPE[size], value + _as_bytes(data)))
    for company_id, data in manufacturer_data.items():
        if type(data) is not bytes:
            data = _as_bytes(data)
        length = len(data) + 3
        if length > 0xFF:
            raise ValueError(f"{len(data)} bytes do not fit in one AD structure")
        # bytes() refuses a company id beyond 16 bits (ValueError).
        parts.append(
            bytes((length, AD_MANUFACTURER_DATA, company_id & 0xFF, company_id >> 8)) + data
        )
    if tx_power is not None:
        parts.append(_structure(AD_TX_POWER, tx_power.to_bytes(1, "big", signed=True)))
    if local_name is not None:
        parts.append(_structure(AD_COMPLETE_LOCAL_NAME, local_name.encode()))
    return b"".join(parts)


def _as_bytes(data: Any) -> bytes:
    if type(data) is bytes:
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"advertising data must be bytes, not {type(data).__name__}")


def raw_bytes(platform_data: Sequence[Any]) -> bytes | None:
    """The advertisement's raw bytes where the source kept them, else None.

    The simulator and the replay source put an object with a ``raw`` bytes attribute first in
    bleak's ``platform_data``; radio backends (BlueZ, CoreBluetooth, WinRT) do not.
    """
    if platform_data:
        raw = getattr(platform_data[0], "raw", None)
        if type(raw) is bytes:
            return raw
    return None
