"""From one advertisement to presence events: decode, identify, smooth, track, publish."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Protocol

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from gateway.arbitrate import Arbiter, ArbitrationRules
from gateway.config import GatewaySettings
from gateway.decode import Decoded, Decoder, DeviceClass, canonical_ad_bytes, raw_bytes
from gateway.fleet import BeaconFleet
from gateway.identify import DAY_S, IdentityResolver, IdentityRules, SameDevice
from gateway.passers import PasserCounter
from gateway.presence import PresenceTracker
from gateway.status import GatewayCounters, Heartbeat
from gateway.track import RssiSmoother, estimate_distance_m
from storelink.clock import Clock
from storelink.wire import (
    MAX_SIGHTINGS,
    Calibration,
    GatewayConfig,
    GatewayState,
    GatewayStatus,
    PeerSightings,
    PresenceEvent,
    Sighting,
    Subject,
    SubjectType,
    ZoneConfig,
)

logger = logging.getLogger(__name__)

PSEUDONYM_KEY_BYTES = 32
# What PresenceEvent accepts; BlueZ reports 127 when the controller measured nothing.
RSSI_RANGE_DBM = (-127, 20)
# Every device repeats the same advertisement several times a second: what a device's
# advertisement means is remembered rather than decoded and identified again (measured: bench/).
# Emptied when full, so passers-by with random addresses cannot make it grow.
IDENTITY_CACHE_SIZE = 4096

_Identity = tuple[Decoded, Subject | None]
# A subject first heard is nobody's for this many sightings intervals: time for the peers'
# summaries to tell whether one of them hears it louder.
SETTLE_INTERVALS = 1.5
# What a remote config may calibrate: subject types and the decoder's device classes.
CALIBRATION_CLASSES = frozenset(t.value for t in SubjectType) | frozenset(
    c.value for c in DeviceClass
)
_SUBJECT_FIRST = frozenset({SubjectType.APP, SubjectType.WEARABLE})
# Worn rather than carried: a person's second device (``PresenceTracker.companion_window_s``).
WEARABLE_CLASSES = frozenset(
    {
        DeviceClass.APPLE_WATCH,
        DeviceClass.APPLE_AUDIO,
        DeviceClass.GARMIN,
        DeviceClass.FITBIT,
        DeviceClass.HUAMI_XIAOMI,
        DeviceClass.POLAR,
        DeviceClass.HEART_RATE,
    }
)


class _Zone:
    """One zone's presence, judged with its own path-loss exponent."""

    def __init__(self, tracker: PresenceTracker, path_loss_exponent: float) -> None:
        self.tracker = tracker
        self.path_loss_exponent = path_loss_exponent


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
            # Staff badges are kept out of presence like the store's own beacons.
            store_beacons=frozenset(settings.store_beacons) | frozenset(settings.staff_beacons),
            # Without a configured key, pseudonyms are linkable only within this run.
            pseudonym_key=(
                key.get_secret_value().encode()
                if key is not None
                else secrets.token_bytes(PSEUDONYM_KEY_BYTES)
            ),
            irks=settings.irk_bytes(),
        )
        self._decoder = Decoder(settings.app_uuid, IDENTITY_CACHE_SIZE)
        self._resolver = IdentityResolver(self._rules)
        self._smoother = RssiSmoother(
            settings.smoothing_alpha,
            settings.exit_timeout_s,
            kind=settings.smoothing_filter,
            window=settings.smoothing_window,
        )
        self._zones = [self._new_zone(self._local_zone())]
        # How long a subject has been heard matters only to a door counting arrivals.
        self._arrivals_only = settings.arrival_heard_max_s > 0
        # The app's token and the phone's own broadcast, one address: one subject.
        self._same_device = SameDevice(settings.exit_timeout_s)
        # Which gateway of the store hears each subject best; None: this gateway decides alone.
        self._arbiter = (
            Arbiter(
                settings.gateway_id,
                ArbitrationRules(
                    margin_db=settings.arbitration_margin_db,
                    hold_s=settings.arbitration_hold_s,
                    stale_s=settings.arbitration_stale_s,
                    settle_s=settings.sightings_interval_s * SETTLE_INTERVALS,
                ),
            )
            if settings.arbitration
            else None
        )
        self._sightings_since = clock.now()
        # RSSI at 1 m from the remote config; None: what the devices advertise, or rssi_at_1m.
        self._calibration: Calibration | None = None
        self._rssi_offset_db = settings.rssi_offset_db
        self._last_heartbeat = clock.now()
        self.passers = PasserCounter()
        self.heartbeat = Heartbeat(settings, clock.now())
        self.fleet = BeaconFleet(
            settings.store_beacons,
            settings.staff_beacons,
            missing_after_s=settings.beacon_missing_after_s,
            report_every_s=settings.beacon_report_s,
            now=clock.now(),
        )
        # (address, advertisement bytes) -> what decode and identify made of it, for the current
        # UTC day (anonymous pseudonyms change at midnight). The bytes are the raw advertisement
        # where the source keeps it (simulator, replay), else rebuilt from bleak's fields.
        self._identities: dict[tuple[str, bytes], _Identity] = {}
        self._day = -1.0

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
        arbiter = self._arbiter
        for zone in self._zones:
            if arbiter is not None:
                # Taken over by a peer; one that nobody hears any more exits on time below.
                for subject in zone.tracker:
                    owner = arbiter.owner(subject, now)
                    if owner is not None and owner != self.settings.gateway_id:
                        self._emit(zone.tracker.release(subject, now))
            self._emit(zone.tracker.expire(now))
        self._smoother.prune(now)
        self._same_device.prune(now)
        self.counters.passers_by += self.passers.expire(now)
        if arbiter is not None:
            arbiter.prune(now)
        if now - self._last_heartbeat >= self.settings.heartbeat_s:
            self._last_heartbeat = now
            self._sink.publish_status(self.status(GatewayState.ONLINE, now))

    def status(self, state: GatewayState, now: float, *, sample: bool = True) -> GatewayStatus:
        """The status with counters, advert rate, uptime, CPU temperature and config version."""
        return self.heartbeat.status(state, now, self.counters, sample=sample)

    def apply_config(self, config: GatewayConfig) -> None:
        """Apply a remote config at once: zones, calibration, store and staff beacons, app UUID,
        IRKs. What it leaves out (null) is the local setting. Raises ValueError, changing
        nothing, if the gateway cannot use it. Subjects in a zone that is gone exit now."""
        settings = self.settings
        if (config.store_id, config.gateway_id) != (settings.store_id, settings.gateway_id):
            raise ValueError("the config is for another gateway")
        unknown = set(config.calibration.by_device_class) - CALIBRATION_CLASSES
        if unknown:
            raise ValueError(f"calibration.by_device_class: unknown classes {sorted(unknown)}")
        store = settings.store_beacons if config.store_beacons is None else config.store_beacons
        staff = settings.staff_beacons if config.staff_beacons is None else config.staff_beacons
        app_uuid = settings.app_uuid if config.app_uuid is None else str(config.app_uuid)
        irks = (
            settings.irk_bytes()
            if config.irks is None
            else {ref: bytes.fromhex(irk) for ref, irk in config.irks.items()}
        )
        rules = IdentityRules(
            app_uuid=app_uuid,
            store_beacons=frozenset(store) | frozenset(staff),
            pseudonym_key=self._rules.pseudonym_key,
            irks=irks,
        )
        specs = config.zones or (self._local_zone(),)
        # Valid: from here on nothing raises.
        now = self._clock.now()
        current = {zone.tracker.zone_id: zone for zone in self._zones}
        zones = []
        for spec in specs:
            zone = current.pop(spec.zone_id, None)
            if zone is None:
                zone = self._new_zone(spec)
            else:
                zone.tracker.enter_distance_m = spec.enter_distance_m
                zone.tracker.exit_distance_m = spec.exit_distance_m
                zone.path_loss_exponent = spec.path_loss_exponent or settings.path_loss_exponent
            zones.append(zone)
        for gone in current.values():
            self._emit(gone.tracker.exit_all(now))
        self._zones = zones
        if app_uuid != self._rules.app_uuid:
            self._decoder = Decoder(app_uuid, IDENTITY_CACHE_SIZE)
        self._rules = rules
        self._resolver = IdentityResolver(rules)
        self._identities.clear()
        self._same_device.clear()
        calibration = config.calibration
        self._calibration = (
            calibration if calibration.by_beacon or calibration.by_device_class else None
        )
        self._rssi_offset_db = _or(config.rssi_offset_db, settings.rssi_offset_db)
        self.fleet.configure(store, staff, now)
        if self._arbiter is not None:
            self._arbiter.rules = ArbitrationRules(
                margin_db=_or(config.arbitration_margin_db, settings.arbitration_margin_db),
                hold_s=_or(config.arbitration_hold_s, settings.arbitration_hold_s),
                stale_s=settings.arbitration_stale_s,
                settle_s=settings.sightings_interval_s * SETTLE_INTERVALS,
            )
        self.heartbeat.config_applied(config.version)

    def on_peer_sightings(self, sightings: PeerSightings, now: float) -> None:
        """Another gateway's summary: how loud it hears which subjects (``gateway.arbitrate``)."""
        arbiter = self._arbiter
        settings = self.settings
        if (
            arbiter is None
            or sightings.store_id != settings.store_id
            or sightings.gateway_id == settings.gateway_id
        ):
            return
        arbiter.peer_alive(now)
        for sighting in sightings.sightings:
            arbiter.heard(
                sightings.gateway_id, sighting.subject, sighting.rssi, now - sighting.age_s
            )

    def sightings(self, now: float) -> PeerSightings | None:
        """What this gateway heard since its previous summary, for its peers; None when it does
        not arbitrate."""
        arbiter = self._arbiter
        if arbiter is None:
            return None
        since, self._sightings_since = self._sightings_since, now
        heard = [
            Sighting(subject=subject, rssi=round(reading.rssi, 1), age_s=round(now - reading.at, 2))
            for subject, reading in arbiter.own_readings(since)
            if isinstance(subject, Subject)
        ]
        return PeerSightings(
            store_id=self.settings.store_id,
            gateway_id=self.settings.gateway_id,
            ts=datetime.fromtimestamp(now, UTC),
            sightings=tuple(heard[:MAX_SIGHTINGS]),
        )

    def config_rejected(self, reason: str) -> None:
        """A remote config was refused: the status says why until a good one is applied."""
        self.heartbeat.config_rejected(reason)

    def _local_zone(self) -> ZoneConfig:
        settings = self.settings
        return ZoneConfig(
            zone_id=settings.zone_id,
            enter_distance_m=settings.enter_distance_m,
            exit_distance_m=settings.exit_distance_m,
            path_loss_exponent=settings.path_loss_exponent,
        )

    def _new_zone(self, spec: ZoneConfig) -> _Zone:
        settings = self.settings
        tracker = PresenceTracker(
            store_id=settings.store_id,
            gateway_id=settings.gateway_id,
            zone_id=spec.zone_id,
            enter_distance_m=spec.enter_distance_m,
            exit_timeout_s=settings.exit_timeout_s,
            dwell_interval_s=settings.dwell_interval_s,
            exit_distance_m=spec.exit_distance_m,
            exit_interval_margin=settings.exit_interval_margin,
            exit_floor_s=settings.exit_floor_s,
            enter_confirm_s=settings.enter_confirm_s,
            companion_window_s=settings.companion_window_s,
            arrival_heard_max_s=settings.arrival_heard_max_s,
        )
        return _Zone(tracker, spec.path_loss_exponent or settings.path_loss_exponent)

    def set_irks(self, irks: Mapping[str, bytes]) -> None:
        """Replace the wearables' IRKs (subject ref -> 16-byte key), e.g. from remote config."""
        self._resolver.set_irks(irks)
        self._identities.clear()
        self._same_device.clear()

    def close(self, now: float) -> None:
        """Exit everyone still present, since nobody will be watching them leave."""
        for zone in self._zones:
            self._emit(zone.tracker.exit_all(now))

    def _handle(self, address: str, adv: AdvertisementData, now: float) -> None:
        if not RSSI_RANGE_DBM[0] <= adv.rssi <= RSSI_RANGE_DBM[1]:
            raise ValueError("RSSI out of range")
        decoded, subject = self._identify(address, adv, now)
        # The store's beacons and staff badges: their health is watched, they are not presence.
        if self.fleet.claims(address, decoded, adv.rssi, now) or subject is None:
            return
        subject = self._same_device.subject(address, subject, now, self._is_present)
        rssi = self._smoother.update(subject, adv.rssi + self._rssi_offset_db, now)
        # Anonymous subjects change with the address: the device class follows the rotation.
        kind = decoded.device_class if subject.type is SubjectType.ANONYMOUS else None
        self.passers.heard(subject, now, kind=kind, rssi=rssi)
        zones = self._zones
        arbiter = self._arbiter
        if arbiter is not None:
            gateway_id = self.settings.gateway_id
            arbiter.heard(gateway_id, subject, rssi, now)
            owner = arbiter.owner(subject, now)
            if owner is None:
                # Newly heard, the peers' word still awaited: keep whom this gateway has, enter
                # nobody.
                zones = [zone for zone in zones if subject in zone.tracker]
            elif owner != gateway_id:
                self.passers.came_in(subject)
                for zone in zones:
                    self._emit(zone.tracker.release(subject, now))
                return
        measured_power = self._rssi_at_1m(decoded, subject)
        wearable = subject.type is SubjectType.WEARABLE or decoded.device_class in WEARABLE_CLASSES
        heard_s = self.passers.heard_for_s(subject, now) if self._arrivals_only else 0.0
        for zone in zones:
            distance = estimate_distance_m(rssi, measured_power, zone.path_loss_exponent)
            self._emit(
                zone.tracker.observe(
                    subject, rssi, distance, now, wearable=wearable, heard_s=heard_s
                )
            )

    def _is_present(self, subject: Subject) -> bool:
        return any(subject in zone.tracker for zone in self._zones)

    def _rssi_at_1m(self, decoded: Decoded, subject: Subject) -> float:
        """The remote calibration: the beacon's own entry, else the app's or a wearable's subject
        type, else the device class, else the subject type; without one, what the device
        advertises, else the rssi_at_1m setting."""
        calibration = self._calibration
        if calibration is not None:
            beacon_id = decoded.beacon_id
            if beacon_id is not None and beacon_id in calibration.by_beacon:
                return calibration.by_beacon[beacon_id]
            by_class = calibration.by_device_class
            keys = (subject.type.value, decoded.device_class.value)
            for key in keys if subject.type in _SUBJECT_FIRST else keys[::-1]:
                if key in by_class:
                    return by_class[key]
        measured_power = decoded.measured_power
        return self.settings.rssi_at_1m if measured_power is None else measured_power

    def _identify(self, address: str, adv: AdvertisementData, now: float) -> _Identity:
        raw = raw_bytes(adv.platform_data)
        if raw is None:
            raw = canonical_ad_bytes(
                adv.local_name,
                adv.service_uuids,
                adv.service_data,
                adv.manufacturer_data,
                adv.tx_power,
            )
        day = now // DAY_S
        if day != self._day:
            self._day = day
            self._identities.clear()
            self._same_device.clear()
        key = (address, raw)
        known = self._identities.get(key)
        if known is None:
            decoded = self._decoder.decode_fields(
                raw, adv.manufacturer_data, adv.service_data, adv.service_uuids, adv.local_name
            )
            known = decoded, self._resolver.identify(address, decoded, now)
            if len(self._identities) >= IDENTITY_CACHE_SIZE:
                self._identities.clear()
            self._identities[key] = known
        return known

    def _emit(self, events: list[PresenceEvent]) -> None:
        for event in events:
            self.passers.came_in(event.subject)
            if self._sink.publish(event):
                self.counters.events_published += 1


def _or(value: float | None, default: float) -> float:
    return default if value is None else value
