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
_AD_INCOMPLETE_UUID16 = 0x02
_AD_COMPLETE_UUID16 = 0x03
_AD_TX_POWER = 0x0A
_AD_SERVICE_DATA_UUID16 = 0x16
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


def uuid16_list_ad(uuids: list[int], *, complete: bool = True) -> bytes:
    """A list of 16-bit service UUIDs, each little-endian."""
    data = b"".join(uuid.to_bytes(2, "little") for uuid in uuids)
    return ad_structure(_AD_COMPLETE_UUID16 if complete else _AD_INCOMPLETE_UUID16, data)


def service_data16_ad(uuid: int, data: bytes) -> bytes:
    """Service data for a 16-bit UUID: the UUID little-endian, then the service's bytes."""
    return ad_structure(_AD_SERVICE_DATA_UUID16, uuid.to_bytes(2, "little") + data)


def tx_power_ad(dbm: int) -> bytes:
    return ad_structure(_AD_TX_POWER, dbm.to_bytes(1, "big", signed=True))


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


# 16-bit UUIDs from the Bluetooth SIG's Assigned Numbers: GATT services, then member services.
HEART_RATE_SERVICE = 0x180D
BATTERY_SERVICE = 0x180F
HUAMI_SERVICE = 0xFEE0
"""Anhui Huami (Amazfit, Mi Band) member service."""
GOOGLE_SERVICE = 0xFEF3
"""Google LLC member service, in the service data Android's Nearby features broadcast."""
HUAMI_COMPANY_ID = 0x0157


def heart_rate_strap_frame(tx_power_dbm: int = 0) -> bytes:
    """A chest strap waiting for a phone: the Heart Rate and Battery services, and its power."""
    return advertisement(
        flags_ad(BEACON_FLAGS),
        uuid16_list_ad([HEART_RATE_SERVICE, BATTERY_SERVICE], complete=False),
        tx_power_ad(tx_power_dbm),
    )


def fitness_band_frame(device_bytes: bytes) -> bytes:
    """A fitness band: its vendor's service UUID and 6 bytes of vendor manufacturer data."""
    if len(device_bytes) != 6:
        raise ValueError("the band's manufacturer data is 6 bytes")
    return advertisement(
        flags_ad(BEACON_FLAGS),
        uuid16_list_ad([HUAMI_SERVICE]),
        manufacturer_ad(HUAMI_COMPANY_ID, device_bytes),
    )


def android_nearby_frame(payload: bytes) -> bytes:
    """An Android phone's Nearby broadcast: Google service data with a rotating payload.

    The payload is opaque here (it is encrypted on real phones) and changes with the address.
    """
    if not 1 <= len(payload) <= 20:
        raise ValueError("the Nearby payload is 1 to 20 bytes")
    return advertisement(flags_ad(PHONE_FLAGS), service_data16_ad(GOOGLE_SERVICE, payload))
