"""What kind of device sent an advertisement, from its manufacturer data and service UUIDs.

A device class describes; it never identifies: Apple's Continuity messages tell an iPhone from a
Watch, but their tags rotate with the address and the gateway keys nothing on them.

Who makes what comes from the Bluetooth SIG's assigned numbers as the ``bluetooth-numbers``
package ships them (company identifiers, and the 16-bit service UUIDs the SIG assigns to member
companies), with bleak's copy of the member UUIDs for any the package lacks. Vendors are matched by
their registered names (``VENDOR_NAMES``), not by hand-typed identifier tables. The few protocol
constants below (Continuity message types, Microsoft's CDP scenario, Fast Pair's and Heart Rate's
UUIDs) are what no registry holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from functools import cache
from typing import Any

from bleak.uuids import uuid16_dict as _bleak_uuid16
from bluetooth_numbers import company as _sig_companies
from bluetooth_numbers import service as _sig_services


class DeviceClass(StrEnum):
    UNKNOWN = "unknown"
    """Nothing recognisable: empty, malformed, or only unassigned identifiers."""
    GENERIC = "generic"
    """Says something (a name, a known company's data, a service) that no rule below knows."""
    BEACON = "beacon"
    """iBeacon, AltBeacon or Eddystone, including the shopper app's token."""
    APPLE_PHONE = "apple_phone"
    """Continuity from an iPhone, or an iPad or Mac: Continuity does not tell them apart."""
    APPLE_WATCH = "apple_watch"
    APPLE_AUDIO = "apple_audio"
    """AirPods or Beats (Continuity proximity pairing)."""
    APPLE_FIND_MY = "apple_find_my"
    """An AirTag or an Apple device that is offline, broadcasting for Find My."""
    APPLE = "apple"
    """Another Apple device or message (AirPlay, HomeKit, AirPrint, ...)."""
    MICROSOFT_CDP = "microsoft_cdp"
    """A Windows or Xbox device's Connected Devices Platform beacon."""
    MICROSOFT = "microsoft"
    GOOGLE_FAST_PAIR = "google_fast_pair"
    """Headphones or a watch offering Google Fast Pair."""
    GOOGLE = "google"
    """Android phones' Nearby broadcasts and Google's other services."""
    SAMSUNG = "samsung"
    GARMIN = "garmin"
    FITBIT = "fitbit"
    HUAMI_XIAOMI = "huami_xiaomi"
    """Amazfit, Zepp and Mi bands and watches (Anhui Huami, Xiaomi)."""
    POLAR = "polar"
    HEART_RATE = "heart_rate"
    """A heart-rate sensor of no recognised vendor (GATT Heart Rate service 0x180D)."""


# Registered names (Bluetooth SIG company identifiers and member UUIDs) to device classes.
VENDOR_NAMES: tuple[tuple[re.Pattern[str], DeviceClass], ...] = (
    (re.compile(r"^Apple\b"), DeviceClass.APPLE),
    (re.compile(r"^Microsoft\b"), DeviceClass.MICROSOFT),
    (re.compile(r"^Google\b"), DeviceClass.GOOGLE),
    (re.compile(r"^Samsung Electronics\b"), DeviceClass.SAMSUNG),
    (re.compile(r"^Garmin\b"), DeviceClass.GARMIN),
    (re.compile(r"^Fitbit\b"), DeviceClass.FITBIT),
    (re.compile(r"\bHuami\b|^Xiaomi\b|^Zepp\b"), DeviceClass.HUAMI_XIAOMI),
    (re.compile(r"^Polar Electro\b"), DeviceClass.POLAR),
)

APPLE_COMPANY_ID = 0x004C
MICROSOFT_COMPANY_ID = 0x0006
# Microsoft's MS-CDP specification, §2.2.2.1: the first byte of the beacon is the scenario type.
CDP_SCENARIO_BLUETOOTH = 0x01

# Apple Continuity message types (furiousMAC/continuity; Martin et al. and Celosia & Cunche,
# PoPETs 2019 and 2020). Manufacturer data 4C 00 is a sequence of type, length, payload.
_CONTINUITY_PROXIMITY_PAIRING = 0x07
_CONTINUITY_MAGIC_SWITCH = 0x0B  # only an Apple Watch that lost its iPhone sends it
_CONTINUITY_NEARBY_INFO = 0x10
_CONTINUITY_FIND_MY = 0x12
_CONTINUITY_PHONE = frozenset(
    {
        0x05,  # AirDrop
        0x0C,  # Handoff
        0x0D,  # Wi-Fi settings (tethering target)
        0x0E,  # Instant Hotspot (tethering source)
        0x0F,  # Nearby Action
    }
)
# Nearby Info's low nibble after the length is the action code; 0x0A is "watch on wrist and
# unlocked", which only a Watch reports of itself.
_NEARBY_INFO_WATCH_ON_WRIST = 0x0A


def _uuid16(value: int) -> str:
    return f"0000{value:04x}-0000-1000-8000-00805f9b34fb"


FAST_PAIR_SERVICE_UUID = _uuid16(0xFE2C)
HEART_RATE_SERVICE_UUID = _uuid16(0x180D)
# Fitbit trackers advertise this vendor UUID (reverse-engineered by Gadgetbridge); the SIG lists
# no Fitbit member UUID.
FITBIT_SERVICE_UUID = "adabfb00-6e7d-4601-bda2-bffaa68956ba"

# 16-bit UUIDs the SIG assigns to member companies: 0xFC00 and up (Assigned Numbers, §3.11).
_MEMBER_UUIDS = range(0xFC00, 0x10000)


def _vendor_class(name: str) -> DeviceClass | None:
    for pattern, device_class in VENDOR_NAMES:
        if pattern.search(name):
            return device_class
    return None


# The SIG's "default vendor id for devices without a Device ID record": no company at all.
NO_COMPANY_ID = 0xFFFF


@cache
def _companies() -> dict[int, tuple[str, DeviceClass | None]]:
    return {
        cid: (name, _vendor_class(name))
        for cid, name in dict(_sig_companies).items()
        if cid != NO_COMPANY_ID
    }


def classified_company_ids() -> frozenset[int]:
    """Company identifiers whose manufacturer data names a device class (Samsung, Garmin, ...)."""
    return frozenset(cid for cid, (_, device_class) in _companies().items() if device_class)


def _member_uuid(key: Any) -> int | None:
    """bluetooth-numbers 1.1.2 writes member UUIDs' decimal values behind 0x (0x65236 for
    65236 = 0xFED4); both that and a correct key give the UUID."""
    if not isinstance(key, int):
        return None
    if key in _MEMBER_UUIDS:
        return key
    digits = f"{key:x}"
    if digits.isdecimal() and int(digits) in _MEMBER_UUIDS:
        return int(digits)
    return None


@cache
def _service_owners() -> dict[str, tuple[str, DeviceClass | None]]:
    """Full UUID string -> (member company, class) for the SIG's member UUIDs."""
    owners: dict[str, str] = {}
    for number, name in _bleak_uuid16.items():
        if number in _MEMBER_UUIDS:
            # bleak's table writes "Apple: Inc." for "Apple, Inc.".
            owners[_uuid16(number)] = name.replace(": ", ", ")
    for key, name in dict(_sig_services).items():
        # Only the keys the package got wrong are owners; correctly keyed ones in the member
        # range are service names ("Eddystone", "Fast Pair Service").
        member = _member_uuid(key)
        if member is not None and member != key:
            owners[_uuid16(member)] = name
    return {uuid: (name, _vendor_class(name)) for uuid, name in owners.items()}


def classified_member_uuids() -> frozenset[str]:
    """16-bit member service UUIDs (full strings) whose owner names a device class."""
    return frozenset(uuid for uuid, (_, device_class) in _service_owners().items() if device_class)


def company_name(company_id: int) -> str | None:
    """The SIG's registered name of a company identifier; None if unassigned."""
    known = _companies().get(company_id)
    return None if known is None else known[0]


def service_owner(uuid: str) -> str | None:
    """The member company a 16-bit service UUID is assigned to; None if not a member UUID."""
    known = _service_owners().get(uuid.lower())
    return None if known is None else known[0]


def _continuity_class(payload: bytes) -> DeviceClass:
    """The most telling of the Continuity messages in Apple's manufacturer data."""
    found = DeviceClass.APPLE
    offset, end = 0, len(payload)
    while offset + 2 <= end:
        kind, length = payload[offset], payload[offset + 1]
        body = payload[offset + 2 : offset + 2 + length]
        offset += 2 + length
        if kind == _CONTINUITY_MAGIC_SWITCH:
            return DeviceClass.APPLE_WATCH
        if kind == _CONTINUITY_NEARBY_INFO and body:
            if body[0] & 0x0F == _NEARBY_INFO_WATCH_ON_WRIST:
                return DeviceClass.APPLE_WATCH
            found = DeviceClass.APPLE_PHONE
        elif kind == _CONTINUITY_PROXIMITY_PAIRING:
            return DeviceClass.APPLE_AUDIO
        elif kind == _CONTINUITY_FIND_MY:
            return DeviceClass.APPLE_FIND_MY
        elif kind in _CONTINUITY_PHONE:
            found = DeviceClass.APPLE_PHONE
    return found


def classify(
    manufacturer_data: Mapping[int, bytes],
    service_data: Mapping[str, bytes],
    service_uuids: Iterable[str],
    *,
    local_name: str | None = None,
    is_beacon: bool = False,
) -> tuple[DeviceClass, str | None]:
    """The device class and the manufacturer's registered name (or None).

    The manufacturer is the company of the first manufacturer data, else the member company of
    the first service UUID assigned to one. Never raises on bytes payloads and string UUIDs.
    """
    companies = _companies()
    owners = _service_owners()
    uuids = [uuid.lower() for uuid in (*service_uuids, *service_data)]
    manufacturer: str | None = None
    vendor: DeviceClass | None = None
    recognised = False
    for company_id, payload in manufacturer_data.items():
        known = companies.get(company_id)
        if known is None:
            continue
        recognised = True
        if manufacturer is None:
            manufacturer = known[0]
        if vendor is not None:
            continue
        if company_id == APPLE_COMPANY_ID:
            vendor = _continuity_class(payload)
        elif company_id == MICROSOFT_COMPANY_ID:
            cdp = payload[:1] == bytes((CDP_SCENARIO_BLUETOOTH,))
            vendor = DeviceClass.MICROSOFT_CDP if cdp else DeviceClass.MICROSOFT
        else:
            vendor = known[1]
    for uuid in uuids:
        owner = owners.get(uuid)
        if owner is None:
            continue
        recognised = True
        if manufacturer is None:
            manufacturer = owner[0]
        if vendor is None:
            vendor = owner[1]
    if is_beacon:
        return DeviceClass.BEACON, manufacturer
    if FAST_PAIR_SERVICE_UUID in uuids:
        return DeviceClass.GOOGLE_FAST_PAIR, manufacturer
    if FITBIT_SERVICE_UUID in uuids:
        return DeviceClass.FITBIT, manufacturer
    # A vendor's own class says more than "a Google service" (an Android phone's Nearby data rides
    # along with many vendors' adverts) or the Heart Rate service (a Polar or Garmin strap).
    if vendor is not None and vendor is not DeviceClass.GOOGLE:
        return vendor, manufacturer
    if HEART_RATE_SERVICE_UUID in uuids:
        return DeviceClass.HEART_RATE, manufacturer
    if vendor is not None:
        return vendor, manufacturer
    if recognised or uuids or local_name:
        return DeviceClass.GENERIC, manufacturer
    return DeviceClass.UNKNOWN, manufacturer
