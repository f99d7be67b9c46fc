"""Advertising payloads byte for byte as they go over the air (what btmon shows as the data).

Each payload is a sequence of AD structures: one length byte (counting the type and data), one
AD type byte, then the data.
"""

from __future__ import annotations

from uuid import UUID

APPLE_COMPANY_ID = 0x004C

# A legacy (BLE 4) advertisement carries at most 31 bytes of AD structures.
LEGACY_ADV_MAX_BYTES = 31

_AD_FLAGS = 0x01
_AD_MANUFACTURER_DATA = 0xFF

# LE General Discoverable, BR/EDR not supported: what a dedicated beacon sends.
BEACON_FLAGS = 0x06
# LE General Discoverable plus simultaneous LE and BR/EDR: what an iPhone sends.
PHONE_FLAGS = 0x1A

_IBEACON_TYPE = 0x02
_IBEACON_LENGTH = 0x15  # the 21 bytes of UUID, major, minor and measured power
_NEARBY_INFO_TYPE = 0x10
_NEARBY_INFO_LENGTH = 0x05
_NEARBY_AUTH_TAG_BYTES = 3


def ad_structure(ad_type: int, data: bytes) -> bytes:
    return bytes([len(data) + 1, ad_type]) + data


def advertisement(*structures: bytes) -> bytes:
    payload = b"".join(structures)
    if len(payload) > LEGACY_ADV_MAX_BYTES:
        raise ValueError(f"{len(payload)} bytes do not fit in a legacy advertisement")
    return payload


def flags_ad(flags: int) -> bytes:
    return ad_structure(_AD_FLAGS, bytes([flags]))


def manufacturer_ad(company_id: int, data: bytes) -> bytes:
    # Company identifiers are little-endian on air, like every multi-byte GAP field.
    return ad_structure(_AD_MANUFACTURER_DATA, company_id.to_bytes(2, "little") + data)


def ibeacon_frame(uuid: UUID, major: int, minor: int, measured_power: int) -> bytes:
    """Apple's iBeacon: flags, then manufacturer data 4C 00 02 15 UUID major minor power.

    Unlike the GAP fields around it, major and minor are big-endian; measured power is the
    signed RSSI at 1 m.
    """
    for name, value in (("major", major), ("minor", minor)):
        if not 0 <= value <= 0xFFFF:
            raise ValueError(f"iBeacon {name} must fit in 16 bits, got {value}")
    if not -128 <= measured_power <= 127:
        raise ValueError(f"measured power must fit in a signed byte, got {measured_power}")
    payload = (
        bytes([_IBEACON_TYPE, _IBEACON_LENGTH])
        + uuid.bytes
        + major.to_bytes(2, "big")
        + minor.to_bytes(2, "big")
        + measured_power.to_bytes(1, "big", signed=True)
    )
    return advertisement(flags_ad(BEACON_FLAGS), manufacturer_ad(APPLE_COMPANY_ID, payload))


def nearby_info_frame(auth_tag: bytes, *, status_flags: int = 0x1, action_code: int = 0x7) -> bytes:
    """Apple Continuity "Nearby Info", which any iPhone sends whether or not our app is on it.

    The default action code 7 means "screen on, in use". The 3-byte authentication tag changes
    with the phone's random address, so the frame itself identifies nobody.
    """
    if len(auth_tag) != _NEARBY_AUTH_TAG_BYTES:
        raise ValueError(f"the authentication tag is {_NEARBY_AUTH_TAG_BYTES} bytes")
    if not (0 <= status_flags <= 0xF and 0 <= action_code <= 0xF):
        raise ValueError("status flags and action code are one nibble each")
    data_flags = 0x1C
    payload = (
        bytes([_NEARBY_INFO_TYPE, _NEARBY_INFO_LENGTH, status_flags << 4 | action_code, data_flags])
        + auth_tag
    )
    return advertisement(flags_ad(PHONE_FLAGS), manufacturer_ad(APPLE_COMPANY_ID, payload))
