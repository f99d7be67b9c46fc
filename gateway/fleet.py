"""The health of the store's own beacons: when each was last heard, how strong, and its telemetry.

A store beacon is named by the id its frames carry (iBeacon ``uuid:major:minor`` or Eddystone-UID
``namespace:instance``). Beacons that also send Eddystone-TLM (battery voltage, temperature, PDU
count, uptime) do so in separate advertisements without that id, from the same address: the
address is how a TLM frame is tied to its beacon. Addresses stay in memory; the report names
beacons by id only. Staff badges are remembered the same way, so that none of their frames
becomes presence, but they are not reported.

A beacon not heard for ``missing_after_s`` (counted from the start, or from when it was
configured, if it was never heard) is reported missing, at once rather than at the next
periodic report.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.decode import Decoded, EddystoneTLM
from storelink.wire import BeaconFleetReport, BeaconHealth

RSSI_ALPHA = 0.3
# Addresses of store and staff beacons; a few per beacon at most (some rotate between frames).
MAX_ADDRESSES = 4096
_STAFF = ""


def _utc(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


@dataclass
class _Beacon:
    since: float
    """When the gateway started watching for it."""
    last_seen: float | None = None
    rssi: float | None = None
    telemetry: EddystoneTLM | None = None
    telemetry_at: float | None = None


class BeaconFleet:
    def __init__(
        self,
        store_beacons: Iterable[str],
        staff_beacons: Iterable[str],
        *,
        missing_after_s: float,
        report_every_s: float,
        now: float,
    ) -> None:
        if missing_after_s <= 0 or report_every_s <= 0:
            raise ValueError("missing_after_s and report_every_s must be positive")
        self.missing_after_s = missing_after_s
        self.report_every_s = report_every_s
        self._beacons: dict[str, _Beacon] = {}
        self._staff: frozenset[str] = frozenset()
        # address -> store beacon id, or _STAFF.
        self._addresses: dict[str, str] = {}
        self._last_report: float | None = None
        self._reported_missing: frozenset[str] = frozenset()
        self.configure(store_beacons, staff_beacons, now)

    @property
    def store_beacons(self) -> frozenset[str]:
        return frozenset(self._beacons)

    @property
    def staff_beacons(self) -> frozenset[str]:
        return self._staff

    def configure(
        self, store_beacons: Iterable[str], staff_beacons: Iterable[str], now: float
    ) -> None:
        """Watch these beacons from now on; what is known of beacons still listed is kept."""
        store = list(dict.fromkeys(store_beacons))
        self._beacons = {bid: self._beacons.get(bid) or _Beacon(since=now) for bid in store}
        self._staff = frozenset(staff_beacons)
        self._addresses.clear()
        self._last_report = None  # the set changed: report at once

    def claims(self, address: str, decoded: Decoded, rssi: float, now: float) -> bool:
        """Record an advertisement if it comes from a store or staff beacon, and say so: such an
        advertisement is never presence. ``decoded`` is what the decoder made of it."""
        if not self._beacons and not self._staff:
            return False
        beacon_id = decoded.beacon_id
        owner: str | None = None
        if beacon_id is not None and (beacon_id in self._beacons or beacon_id in self._staff):
            owner = beacon_id if beacon_id in self._beacons else _STAFF
            if self._addresses.get(address) != owner:
                if len(self._addresses) >= MAX_ADDRESSES:
                    self._addresses.clear()
                self._addresses[address] = owner
        else:
            owner = self._addresses.get(address)
        if owner is None:
            return False
        if owner == _STAFF:
            return True
        beacon = self._beacons[owner]
        if (
            beacon.rssi is None
            or beacon.last_seen is None
            or (now - beacon.last_seen > self.missing_after_s)
        ):
            beacon.rssi = float(rssi)
        else:
            beacon.rssi += RSSI_ALPHA * (rssi - beacon.rssi)
        beacon.last_seen = now
        for frame in decoded.frames:
            if isinstance(frame, EddystoneTLM):
                beacon.telemetry, beacon.telemetry_at = frame, now
        return True

    def missing(self, now: float) -> frozenset[str]:
        return frozenset(
            bid
            for bid, beacon in self._beacons.items()
            if now - (beacon.last_seen if beacon.last_seen is not None else beacon.since)
            >= self.missing_after_s
        )

    def report_due(self, now: float) -> bool:
        """Every ``report_every_s``, and at once when a beacon goes missing or comes back."""
        if self._last_report is None or now - self._last_report >= self.report_every_s:
            return True
        return self.missing(now) != self._reported_missing

    def report(self, store_id: str, gateway_id: str, now: float) -> BeaconFleetReport:
        missing = self.missing(now)
        self._last_report, self._reported_missing = now, missing
        beacons = []
        for bid in sorted(self._beacons):
            beacon = self._beacons[bid]
            tlm = beacon.telemetry
            beacons.append(
                BeaconHealth(
                    beacon_id=bid,
                    missing=bid in missing,
                    last_seen=_utc(beacon.last_seen),
                    rssi=None if beacon.rssi is None else round(beacon.rssi, 1),
                    battery_mv=None if tlm is None else tlm.battery_mv,
                    temperature_c=None if tlm is None else tlm.temperature_c,
                    adv_count=None if tlm is None else tlm.adv_count,
                    beacon_uptime_s=None if tlm is None else tlm.uptime_s,
                    telemetry_at=_utc(beacon.telemetry_at),
                )
            )
        return BeaconFleetReport(
            store_id=store_id,
            gateway_id=gateway_id,
            ts=datetime.fromtimestamp(now, UTC),
            missing_after_s=self.missing_after_s,
            beacons=tuple(beacons),
        )
