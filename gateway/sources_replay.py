"""Adverts recorded by ``storelink gateway record``, read back and replayed into the gateway.

A recording is JSON lines (``gateway.record`` writes them): a header line, then one object per
advertisement received::

    {"format": "storelink-adverts", "version": 1, "started": 1764000000.0, "source": "bleak"}
    {"t": 1764000000.125, "address": "rec-3f1c...", "rssi": -61, "raw": "0201061aff4c00...",
     "rebuilt": true}

``address`` is a pseudonym made when recording (never the hardware address), so a replay can
tell adverts of one device apart from another's but cannot resolve wearables' private addresses
with IRKs. ``raw`` is the advertising data; ``rebuilt`` says it was rebuilt from bleak's fields
(BlueZ gives no raw bytes) rather than received as is.

``ReplayScanner`` is a bleak backend: ``BleakScanner(..., backend=ReplayScanner, path=...,
clock=...)`` delivers each advert when its recorded offset from the first one has passed on
``clock``, as ``BLEDevice`` and ``AdvertisementData``, with the raw bytes in ``platform_data``.
``read_recording`` and ``advertisement`` replay as fast as wanted (tests, tools).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner

from gateway.decode.ad import parse_ad
from storelink.clock import Clock

logger = logging.getLogger(__name__)

RECORD_FORMAT = "storelink-adverts"
RECORD_VERSION = 1


class RecordingError(ValueError):
    """A file that is not a recording this version can read."""


@dataclass(frozen=True, slots=True)
class RecordedAdvert:
    t: float
    """Unix time of reception."""
    address: str
    """The device's pseudonym within the recording."""
    rssi: int
    raw: bytes
    """Advertising data (AD structures): what ``gateway.decode.ad.raw_bytes`` finds."""
    rebuilt: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "address": self.address,
            "rssi": self.rssi,
            "raw": self.raw.hex(),
            "rebuilt": self.rebuilt,
        }


def header(started: float, source: str) -> dict[str, Any]:
    return {
        "format": RECORD_FORMAT,
        "version": RECORD_VERSION,
        "started": started,
        "source": source,
    }


def _advert(line: dict[str, Any]) -> RecordedAdvert:
    t, address, rssi, raw = line["t"], line["address"], line["rssi"], line["raw"]
    if not isinstance(t, int | float) or isinstance(t, bool):
        raise TypeError("t is not a number")
    if not isinstance(address, str) or not address:
        raise TypeError("address is not a string")
    if not isinstance(rssi, int) or isinstance(rssi, bool):
        raise TypeError("rssi is not an integer")
    if not isinstance(raw, str):
        raise TypeError("raw is not hex")
    return RecordedAdvert(float(t), address, rssi, bytes.fromhex(raw), bool(line.get("rebuilt")))


def read_recording(path: Path) -> Iterator[RecordedAdvert]:
    """The adverts of a recording in file order.

    A line that cannot be read (a truncated last line after a power cut, an edit gone wrong) is
    skipped and logged by its number; a header of another format or a newer version raises
    ``RecordingError``.
    """
    skipped = 0
    with path.open(encoding="utf-8") as lines:
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
                if not isinstance(line, dict):
                    raise TypeError("not an object")
                if "format" in line:
                    _check_header(path, line)
                    continue
                advert = _advert(line)
            except RecordingError:
                raise
            except (ValueError, TypeError, KeyError) as exc:
                skipped += 1
                logger.warning("%s:%d: skipped an unreadable line (%s)", path, number, exc)
                continue
            yield advert
    if skipped:
        logger.warning("%s: skipped %d unreadable lines", path, skipped)


def _check_header(path: Path, line: dict[str, Any]) -> None:
    if line.get("format") != RECORD_FORMAT:
        raise RecordingError(f"{path} is not a storelink recording ({line.get('format')!r})")
    version = line.get("version")
    if not isinstance(version, int) or version > RECORD_VERSION:
        raise RecordingError(
            f"{path} is a version {version!r} recording; this reads {RECORD_VERSION}"
        )


def advertisement(advert: RecordedAdvert) -> tuple[BLEDevice, AdvertisementData]:
    """The advert as a radio backend reports it; ``platform_data`` is the recorded advert."""
    name, service_uuids, service_data, manufacturer_data, tx_power = parse_ad(advert.raw)
    adv = AdvertisementData(
        local_name=name,
        # The parser's containers are shared between calls; consumers get their own.
        manufacturer_data=dict(manufacturer_data),
        service_data=dict(service_data),
        service_uuids=list(service_uuids),
        tx_power=tx_power,
        rssi=advert.rssi,
        platform_data=(advert,),
    )
    return BLEDevice(advert.address, name, advert), adv


class ReplayScanner(BaseBleakScanner):
    """Delivers a recording's adverts at their recorded pace on ``clock``, then goes quiet."""

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: Literal["active", "passive"] = "active",
        *,
        path: Path,
        clock: Clock,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        if not path.is_file():
            raise FileNotFoundError(f"no recording at {path}")
        self._path = path
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("the scanner is already running")
        self.seen_devices = {}
        self._task = asyncio.create_task(self._replay())

    async def stop(self) -> None:
        if self._task is None:
            return
        task, self._task = self._task, None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    @property
    def finished(self) -> bool:
        return self._task is not None and self._task.done()

    async def _replay(self) -> None:
        started = self._clock.now()
        first: float | None = None
        for advert in read_recording(self._path):
            if first is None:
                first = advert.t
            wait = (advert.t - first) - (self._clock.now() - started)
            if wait > 0:
                await self._clock.sleep(wait)
            self._deliver(advert)
        logger.info("replayed %d adverts from %s", self.delivered, self._path)

    def _deliver(self, advert: RecordedAdvert) -> None:
        device, adv = advertisement(advert)
        if not self.is_allowed_uuid(adv.service_uuids):
            return
        device = self.create_or_update_device(
            advert.address, advert.address, adv.local_name, advert, adv
        )
        self.delivered += 1
        # A radio backend survives a failing callback and keeps scanning; so does this one.
        try:
            self.call_detection_callbacks(device, adv)
        except Exception as exc:
            logger.error("a detection callback failed: %s", type(exc).__name__)
