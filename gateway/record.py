"""``storelink gateway record FILE``: what the radio hears, as JSON lines to replay later.

Each advert is written with its reception time, RSSI, raw advertising data and a pseudonym of
the device's address (HMAC under a key made for this recording and never written), so the file
holds no hardware address: two adverts of one device share a pseudonym, and nothing links it to
the device outside this file. The format is described in ``gateway.sources_replay``.

Raw bytes: the simulator (and any source that keeps them in ``platform_data``) gives the bytes
as received. BlueZ does not: bleak's ``AdvertisementData`` holds only the parsed fields, so the
bytes are rebuilt from them (``gateway.decode.ad.canonical_ad_bytes``) and the line says
``"rebuilt": true``. Rebuilt bytes decode exactly as the fields do, but lack what BlueZ drops
(flags, appearance, unknown AD types) and the original order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
from pathlib import Path
from typing import Any, TextIO

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner

from gateway.config import GatewaySettings
from gateway.decode.ad import canonical_ad_bytes, raw_bytes
from gateway.passive import scanner_kwargs
from gateway.sources_replay import RecordedAdvert, header
from storelink.clock import Clock

logger = logging.getLogger(__name__)

ALIAS_PREFIX = "rec-"
ALIAS_CACHE_SIZE = 4096
KEY_BYTES = 32


class AdvertRecorder:
    """A bleak detection callback that writes each advert to ``out`` as one JSON line."""

    def __init__(
        self, out: TextIO, clock: Clock, *, source: str = "bleak", key: bytes | None = None
    ) -> None:
        self._out = out
        self._clock = clock
        self._key = key if key is not None else secrets.token_bytes(KEY_BYTES)
        self._aliases: dict[str, str] = {}
        self.recorded = 0
        self.rebuilt = 0
        self.errors = 0
        out.write(json.dumps(header(clock.now(), source)) + "\n")

    def alias(self, address: str) -> str:
        """The address's pseudonym in this recording."""
        alias = self._aliases.get(address)
        if alias is None:
            digest = hmac.new(self._key, address.upper().encode(), hashlib.sha256).hexdigest()
            alias = ALIAS_PREFIX + digest[:16]
            if len(self._aliases) >= ALIAS_CACHE_SIZE:
                self._aliases.clear()
            self._aliases[address] = alias
        return alias

    def on_advertisement(self, device: BLEDevice, adv: AdvertisementData) -> None:
        try:
            line = self._line(device.address, adv).to_json()
            self._out.write(json.dumps(line, separators=(",", ":")) + "\n")
        except Exception as exc:
            self.errors += 1
            # Only the type: a message could carry the device's address.
            logger.debug("could not record an advertisement: %s", type(exc).__name__)
            return
        self.recorded += 1

    def _line(self, address: str, adv: AdvertisementData) -> RecordedAdvert:
        raw = raw_bytes(adv.platform_data)
        rebuilt = raw is None
        if raw is None:
            raw = canonical_ad_bytes(
                adv.local_name,
                adv.service_uuids,
                adv.service_data,
                adv.manufacturer_data,
                adv.tx_power,
            )
            self.rebuilt += 1
        return RecordedAdvert(
            t=round(self._clock.now(), 6),
            address=self.alias(address),
            rssi=int(adv.rssi),
            raw=raw,
            rebuilt=rebuilt,
        )


async def record_adverts(
    settings: GatewaySettings,
    path: Path,
    *,
    clock: Clock,
    stop: asyncio.Event,
    duration_s: float | None = None,
    backend: type[BaseBleakScanner] | None = None,
    backend_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Record until ``stop`` is set or ``duration_s`` of ``clock`` time passed; a summary."""
    path.parent.mkdir(parents=True, exist_ok=True)
    bleak_kwargs = scanner_kwargs(settings, backend_kwargs)
    with path.open("w", encoding="utf-8") as out:
        recorder = AdvertRecorder(out, clock, source=settings.scanner)
        scanner = BleakScanner(
            detection_callback=recorder.on_advertisement,
            scanning_mode=settings.scanning_mode,
            backend=backend,
            **bleak_kwargs,
        )
        await scanner.start()
        logger.info("recording adverts to %s", path)
        try:
            if duration_s is None:
                await stop.wait()
            else:
                await _sleep_unless_stopped(clock, duration_s, stop)
        finally:
            await scanner.stop()
    return {
        "file": str(path),
        "adverts": recorder.recorded,
        "rebuilt": recorder.rebuilt,
        "errors": recorder.errors,
    }


async def _sleep_unless_stopped(clock: Clock, seconds: float, stop: asyncio.Event) -> None:
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
        stopper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(sleeper, stopper, return_exceptions=True)
