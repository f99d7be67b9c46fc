"""From one advertisement to presence events: decode, identify, smooth, track, publish."""

from __future__ import annotations

import logging
import secrets
from typing import Protocol

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from gateway.config import GatewaySettings
from gateway.decode import APPLE_COMPANY_ID, IBeacon, decode_ibeacon
from gateway.identify import IdentityRules, identify
from gateway.presence import PresenceTracker
from gateway.status import GatewayCounters, make_status
from gateway.track import RssiSmoother, estimate_distance_m
from storelink.clock import Clock
from storelink.wire import GatewayState, GatewayStatus, PresenceEvent, Subject

logger = logging.getLogger(__name__)

PSEUDONYM_KEY_BYTES = 32
# What PresenceEvent accepts; BlueZ reports 127 when the controller measured nothing.
RSSI_RANGE_DBM = (-127, 20)
# Every device repeats the same advertisement several times a second: what a device's Apple
# payload means is remembered rather than decoded and identified again (measured: bench/).
# Emptied when full, so passers-by with random addresses cannot make it grow.
IDENTITY_CACHE_SIZE = 4096

_Identity = tuple[IBeacon | None, Subject | None]


class EventSink(Protocol):
    def publish(self, event: PresenceEvent) -> bool:
        """Accept ``event`` for delivery; False if it had to be dropped."""
        ...

    def publish_status(self, status: GatewayStatus) -> bool: ...


class GatewayPipeline:
    def __init__(self, settings: GatewaySettings, sink: EventSink, clock: Clock) -> None:
        self.settings = settings
        self.counters = GatewayCounters()
        self._sink = sink
        self._clock = clock
        key = settings.pseudonym_key
        self._rules = IdentityRules(
            app_uuid=settings.app_uuid,
            store_beacons=frozenset(settings.store_beacons),
            # Without a configured key, pseudonyms are linkable only within this run.
            pseudonym_key=(
                key.get_secret_value().encode()
                if key is not None
                else secrets.token_bytes(PSEUDONYM_KEY_BYTES)
            ),
        )
        self._smoother = RssiSmoother(settings.smoothing_alpha, settings.exit_timeout_s)
        self._tracker = PresenceTracker(
            store_id=settings.store_id,
            gateway_id=settings.gateway_id,
            zone_id=settings.zone_id,
            enter_distance_m=settings.enter_distance_m,
            exit_timeout_s=settings.exit_timeout_s,
            dwell_interval_s=settings.dwell_interval_s,
        )
        self._last_heartbeat = clock.now()
        # (address, Apple manufacturer payload) -> what decode and identify made of it. Only the
        # Apple payload is read by decode_ibeacon, and identify reads the address besides.
        self._identities: dict[tuple[str, bytes | None], _Identity] = {}

    def on_advertisement(self, device: BLEDevice, adv: AdvertisementData) -> None:
        """The bleak detection callback: one bad advert is counted and dropped, never raised."""
        self.counters.adverts_seen += 1
        try:
            self._handle(device.address, adv, self._clock.now())
        except Exception as exc:
            self.counters.decode_errors += 1
            # Only the type: a message or traceback could carry the device's address. Debug level,
            # as a bad radio can fail every advert; the count goes out with each heartbeat.
            logger.debug("dropped an advertisement: %s", type(exc).__name__)

    def housekeeping(self, now: float) -> None:
        self._emit(self._tracker.expire(now))
        self._smoother.prune(now)
        if now - self._last_heartbeat >= self.settings.heartbeat_s:
            self._last_heartbeat = now
            self._sink.publish_status(
                make_status(self.settings, GatewayState.ONLINE, now, self.counters)
            )

    def close(self, now: float) -> None:
        """Exit everyone still present, since nobody will be watching them leave."""
        self._emit(self._tracker.exit_all(now))

    def _handle(self, address: str, adv: AdvertisementData, now: float) -> None:
        if not RSSI_RANGE_DBM[0] <= adv.rssi <= RSSI_RANGE_DBM[1]:
            raise ValueError("RSSI out of range")
        beacon, subject = self._identify(address, adv)
        if subject is None:
            return
        rssi = self._smoother.update(subject, adv.rssi, now)
        measured_power = beacon.measured_power if beacon is not None else self.settings.rssi_at_1m
        distance = estimate_distance_m(rssi, measured_power, self.settings.path_loss_exponent)
        self._emit(self._tracker.observe(subject, rssi, distance, now))

    def _identify(self, address: str, adv: AdvertisementData) -> _Identity:
        payload = adv.manufacturer_data.get(APPLE_COMPANY_ID)
        if payload is not None and type(payload) is not bytes:
            payload = bytes(payload)  # a bytearray or memoryview cannot be a key
        key = (address, payload)
        known = self._identities.get(key)
        if known is None:
            beacon = decode_ibeacon(adv.manufacturer_data)
            known = beacon, identify(address, beacon, self._rules)
            if len(self._identities) >= IDENTITY_CACHE_SIZE:
                self._identities.clear()
            self._identities[key] = known
        return known

    def _emit(self, events: list[PresenceEvent]) -> None:
        for event in events:
            if self._sink.publish(event):
                self.counters.events_published += 1
