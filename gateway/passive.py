"""What a passive scan on BlueZ listens for, and the bleak arguments that select the adapter.

BlueZ scans passively only through its advertisement monitor, which reports an advertisement
when one of its AD structures matches an "or pattern" (AD type, offset, bytes); bleak refuses
``scanning_mode="passive"`` without them. Passive scanning sends no scan requests, so it saves the
Pi's radio time and the wearables' batteries, and a shopper's phone learns nothing of the gateway.
The patterns below cover every frame and device class the decoder knows; devices that match none
(no flags, no known company, no known service) are not heard in passive mode, which is the price
of not asking. Active mode hears everything.
"""

from __future__ import annotations

import uuid
from typing import Any

from bleak.args.bluez import BlueZScannerArgs, OrPattern, OrPatternLike
from bleak.assigned_numbers import AdvertisementDataType

from gateway.classify import (
    APPLE_COMPANY_ID,
    FAST_PAIR_SERVICE_UUID,
    FITBIT_SERVICE_UUID,
    HEART_RATE_SERVICE_UUID,
    MICROSOFT_COMPANY_ID,
    classified_company_ids,
    classified_member_uuids,
)
from gateway.config import GatewaySettings
from gateway.decode.beacons import ALTBEACON_CODE
from gateway.decode.eddystone import EDDYSTONE_SERVICE_UUID

# The LE flags values that general- and limited-discoverable, BR/EDR-capable or not, devices
# advertise (Core Supplement, Part A, 1.3): phones, watches, bands and most beacons send one.
COMMON_FLAGS = (0x02, 0x04, 0x05, 0x06, 0x0A, 0x18, 0x19, 0x1A, 0x1B, 0x1E)


def _uuid16_le(uuid128: str) -> bytes:
    return int(uuid128[4:8], 16).to_bytes(2, "little")


def passive_or_patterns() -> list[OrPatternLike]:
    """Every pattern a passive scan registers; BlueZ reports an advert matching any one."""
    manufacturers = {APPLE_COMPANY_ID, MICROSOFT_COMPANY_ID} | classified_company_ids()
    patterns: list[OrPatternLike] = [
        OrPattern(0, AdvertisementDataType.FLAGS, bytes([flags])) for flags in COMMON_FLAGS
    ]
    patterns += [
        OrPattern(0, AdvertisementDataType.MANUFACTURER_SPECIFIC_DATA, cid.to_bytes(2, "little"))
        for cid in sorted(manufacturers)
    ]
    # AltBeacon's beacon code follows whichever company identifier the beacon's maker uses.
    patterns.append(OrPattern(2, AdvertisementDataType.MANUFACTURER_SPECIFIC_DATA, ALTBEACON_CODE))
    patterns += [
        OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, _uuid16_le(service))
        for service in sorted(
            {EDDYSTONE_SERVICE_UUID, FAST_PAIR_SERVICE_UUID} | classified_member_uuids()
        )
    ]
    # A list pattern matches the first UUID of the list only: BlueZ compares at a fixed offset.
    patterns += [
        OrPattern(0, list_type, _uuid16_le(service))
        for service in sorted({HEART_RATE_SERVICE_UUID} | classified_member_uuids())
        for list_type in (
            AdvertisementDataType.COMPLETE_LIST_SERVICE_UUID16,
            AdvertisementDataType.INCOMPLETE_LIST_SERVICE_UUID16,
        )
    ]
    patterns += [
        OrPattern(0, list_type, uuid.UUID(FITBIT_SERVICE_UUID).bytes_le)
        for list_type in (
            AdvertisementDataType.COMPLETE_LIST_SERVICE_UUID128,
            AdvertisementDataType.INCOMPLETE_LIST_SERVICE_UUID128,
        )
    ]
    return patterns


def scanner_kwargs(
    settings: GatewaySettings, backend_kwargs: dict[str, Any] | None
) -> dict[str, Any]:
    """``BleakScanner`` keyword arguments: the backend's own, the adapter, passive patterns."""
    kwargs = dict(backend_kwargs or {})
    bluez: BlueZScannerArgs = {}
    if settings.adapter is not None:
        bluez["adapter"] = settings.adapter
    if settings.scanning_mode == "passive":
        bluez["or_patterns"] = passive_or_patterns()
    if bluez:
        kwargs["bluez"] = bluez
    return kwargs
