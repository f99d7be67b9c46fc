"""Decoding advertisements: the beacon frames they carry and the kind of device that sent them.

Pure and total: any bytes decode to a ``Decoded`` (unknown input is ``device_class="unknown"``
with no frames), never an exception. Raw advertising data is parsed by bluetooth-data-tools
(``gateway.decode.ad``); the frames are read from the parsed fields, the same ones bleak's
``AdvertisementData`` carries, so raw bytes (simulator, replay, ``storelink gateway decode``) and
a radio backend's adverts take the same path.

Frames: iBeacon, the shopper app's token (an iBeacon under the configured app UUID), AltBeacon,
Eddystone UID, URL, TLM (plain; encrypted forwarded opaque) and EID (forwarded opaque). Device
classes: ``gateway.classify``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from uuid import UUID

from gateway.classify import DeviceClass, classify
from gateway.decode.ad import InvalidHexError, canonical_ad_bytes, parse_ad, parse_hex, raw_bytes
from gateway.decode.beacons import (
    APPLE_COMPANY_ID,
    AltBeacon,
    AppToken,
    IBeacon,
    decode_altbeacon,
    decode_ibeacon,
)
from gateway.decode.eddystone import (
    EDDYSTONE_SERVICE_UUID,
    EddystoneEID,
    EddystoneETLM,
    EddystoneTLM,
    EddystoneUID,
    EddystoneURL,
    decode_eddystone,
    decode_url,
)

__all__ = [
    "APPLE_COMPANY_ID",
    "DEFAULT_CACHE_SIZE",
    "AltBeacon",
    "AppToken",
    "Decoded",
    "Decoder",
    "DeviceClass",
    "EddystoneEID",
    "EddystoneETLM",
    "EddystoneTLM",
    "EddystoneUID",
    "EddystoneURL",
    "Frame",
    "IBeacon",
    "InvalidHexError",
    "canonical_ad_bytes",
    "decode_advertisement",
    "decode_altbeacon",
    "decode_eddystone",
    "decode_fields",
    "decode_ibeacon",
    "decode_url",
    "parse_ad",
    "parse_hex",
    "raw_bytes",
]

Frame = (
    IBeacon
    | AppToken
    | AltBeacon
    | EddystoneUID
    | EddystoneURL
    | EddystoneTLM
    | EddystoneETLM
    | EddystoneEID
)

DEFAULT_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Decoded:
    frames: tuple[Frame, ...]
    device_class: DeviceClass
    manufacturer: str | None
    """The Bluetooth SIG's registered name of the company behind the data, if any."""
    # Worked out once here, read for every repeat of the advertisement by the pipeline.
    measured_power: int | None = field(init=False, compare=False)
    """The RSSI at 1 m the first ranging frame claims (Eddystone's 0 m power less 41 dB)."""
    beacon_id: str | None = field(init=False, compare=False)
    """The id of the first beacon frame that has one, as ``store_beacons`` spells it:
    ``uuid:major:minor`` (iBeacon, AltBeacon) or ``namespace:instance`` (Eddystone-UID).
    The shopper app's token is no beacon id."""

    def __post_init__(self) -> None:
        measured_power: int | None = None
        beacon_id: str | None = None
        for frame in self.frames:
            if measured_power is None:
                measured_power = getattr(frame, "measured_power", None)
            if beacon_id is None and isinstance(frame, IBeacon | AltBeacon | EddystoneUID):
                beacon_id = frame.beacon_id
        object.__setattr__(self, "measured_power", measured_power)
        object.__setattr__(self, "beacon_id", beacon_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "frames": [frame.to_json() for frame in self.frames],
            "device_class": self.device_class.value,
            "manufacturer": self.manufacturer,
        }


@lru_cache(maxsize=16)
def _canonical_uuid(app_uuid: str | None) -> str | None:
    return None if app_uuid is None else str(UUID(app_uuid))


def decode_fields(
    manufacturer_data: Mapping[int, bytes],
    service_data: Mapping[str, bytes],
    service_uuids: Iterable[str],
    *,
    local_name: str | None = None,
    app_uuid: str | None = None,
) -> Decoded:
    """Decode the fields of one advertisement (bleak's, or ``parse_ad``'s).

    ``app_uuid``: the retailer's proximity UUID; an iBeacon under it is the shopper app's token
    (``AppToken``) rather than an ``IBeacon``.
    """
    app_uuid = _canonical_uuid(app_uuid)
    frames: list[Frame] = []
    for company_id, payload in manufacturer_data.items():
        if company_id == APPLE_COMPANY_ID:
            beacon = decode_ibeacon(manufacturer_data)
            if beacon is not None:
                if beacon.uuid == app_uuid:
                    frames.append(
                        AppToken(beacon.uuid, beacon.major, beacon.minor, beacon.measured_power)
                    )
                else:
                    frames.append(beacon)
                continue
        altbeacon = decode_altbeacon(company_id, payload)
        if altbeacon is not None:
            frames.append(altbeacon)
    eddystone = service_data.get(EDDYSTONE_SERVICE_UUID)
    if eddystone is not None:
        frame = decode_eddystone(eddystone)
        if frame is not None:
            frames.append(frame)
    device_class, manufacturer = classify(
        manufacturer_data,
        service_data,
        service_uuids,
        local_name=local_name,
        is_beacon=bool(frames),
    )
    return Decoded(tuple(frames), device_class, manufacturer)


def decode_advertisement(raw: bytes, *, app_uuid: str | None = None) -> Decoded:
    """Decode raw advertising data (AD structures, as btmon and hcidump print them)."""
    local_name, service_uuids, service_data, manufacturer_data, _ = parse_ad(raw)
    return decode_fields(
        manufacturer_data,
        service_data,
        service_uuids,
        local_name=local_name,
        app_uuid=app_uuid,
    )


class Decoder:
    """Decodes with a cache keyed on the advertisement's bytes.

    Every device repeats the same advertisement several times a second, so what a payload means
    is remembered instead of decoded again. The cache is emptied when full, so random payloads
    cannot make it grow.
    """

    def __init__(self, app_uuid: str | None = None, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self.app_uuid = _canonical_uuid(app_uuid)
        self.cache_size = cache_size
        self._cache: dict[bytes, Decoded] = {}

    def __len__(self) -> int:
        return len(self._cache)

    def decode(self, raw: bytes) -> Decoded:
        """``decode_advertisement(raw)``, from the cache when these bytes were seen."""
        known = self._cache.get(raw)
        if known is None:
            known = decode_advertisement(raw, app_uuid=self.app_uuid)
            self._remember(raw, known)
        return known

    def decode_fields(
        self,
        key: bytes,
        manufacturer_data: Mapping[int, bytes],
        service_data: Mapping[str, bytes],
        service_uuids: Iterable[str],
        local_name: str | None = None,
    ) -> Decoded:
        """``decode_fields``, cached under ``key``: the raw bytes the fields were parsed from,
        or ``canonical_ad_bytes`` of them."""
        known = self._cache.get(key)
        if known is None:
            known = decode_fields(
                manufacturer_data,
                service_data,
                service_uuids,
                local_name=local_name,
                app_uuid=self.app_uuid,
            )
            self._remember(key, known)
        return known

    def _remember(self, key: bytes, decoded: Decoded) -> None:
        if len(self._cache) >= self.cache_size:
            self._cache.clear()
        self._cache[key] = decoded
