"""The people of a scenario: who comes when, where they walk, and what they carry.

Every random choice about a person comes from a generator seeded with the run's seed and the
person's id, so adding a passer-by does not change any shopper.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

from firmware_sim.addresses import (
    ADDRESS_ROTATION_S,
    IRK_BYTES,
    AddressType,
    RotatingAddress,
    static_random_address,
)
from firmware_sim.firmware import (
    ANDROID_APP_INTERVAL_S,
    ANDROID_NEARBY_INTERVAL_S,
    IOS_APP_INTERVAL_S,
    IPHONE_NEARBY_INTERVAL_S,
    AppFirmware,
    Firmware,
    IBeaconFirmware,
    PhoneFirmware,
    WearableFirmware,
)
from firmware_sim.geometry import Point, RouteGraph, distance, lerp, random_point_in
from firmware_sim.mobility import Trajectory, Walker
from firmware_sim.scenario import DeviceMix, DwellSpec, Scenario, VisitSpec, ZoneSpec

# Where on the body a device is carried: height above the floor, and how much the torso
# attenuates it with the back turned to the gateway (on-body measurements at 2.4 GHz find 10 to
# 20 dB through the torso, less for a wrist that swings clear of it).
CARRY: Mapping[str, tuple[float, float]] = {
    "phone": (1.1, 12.0),
    "app": (1.1, 12.0),
    "watch": (1.0, 6.0),
    "band": (1.0, 6.0),
    "hr_strap": (1.3, 15.0),
    "badge": (1.3, 10.0),
}
# True power at 1 m (dBm) of each kind, before the per-device spread: wearables and straps
# transmit weaker than phones.
TX_1M_DBM: Mapping[str, float] = {
    "phone": -59.0,
    "app": -59.0,
    "watch": -63.0,
    "band": -65.0,
    "hr_strap": -62.0,
    "badge": -59.0,
}
WALK_SPEED_M_S = (0.9, 1.4)
SPOT_MARGIN_M = 0.3


def sim_app_key(seed: int, person_id: str) -> bytes:
    """The app key of a simulated shopper, so that a cloud can register the same shoppers."""
    return hashlib.sha256(f"storelink sim app key {seed}/{person_id}".encode()).digest()


class PersonKind(StrEnum):
    SHOPPER_APP = "shopper_app"
    SHOPPER = "shopper"
    STAFF = "staff"
    PASSERBY = "passerby"


@dataclass(frozen=True)
class Carried:
    firmware: Firmware
    height_m: float
    body_loss_db: float
    tx_1m_dbm: float


@dataclass(frozen=True)
class Person:
    id: str
    kind: PersonKind
    trajectory: Trajectory
    devices: tuple[Carried, ...]
    app_key: bytes | None = None
    abandoned_cart: bool = False
    platform: str | None = None


def hourly_arrivals(per_hour: Mapping[int, float], day_start: float) -> list[tuple[int, float]]:
    """How many arrive in each hour, rounded so that the total is the rounded sum."""
    total = round(sum(per_hour.values()))
    hours = sorted(per_hour)
    floors = {hour: math.floor(per_hour[hour]) for hour in hours}
    spare = total - sum(floors.values())
    by_remainder = sorted(hours, key=lambda h: (-(per_hour[h] - floors[h]), h))
    for hour in by_remainder[:spare]:
        floors[hour] += 1
    return [(floors[hour], day_start + hour * 3600.0) for hour in hours]


class Population:
    """Builds the people of ``scenario`` arriving within ``[t0, t1)`` (unix time)."""

    def __init__(self, scenario: Scenario, seed: int, t0: float, t1: float) -> None:
        self.scenario = scenario
        self.seed = seed
        self.t0, self.t1 = t0, t1
        floor = scenario.floor
        self._zones: dict[str, ZoneSpec] = {zone.id: zone for zone in floor.zones}
        self._routes = RouteGraph(floor.routes.nodes, floor.routes.edges)
        self._day_start = scenario.at(scenario.open.replace(hour=0, minute=0, second=0))
        self._app_uuid = UUID(scenario.app_uuid)

    def people(self) -> list[Person]:
        people = self._shoppers() + self._staff() + self._passersby()
        return sorted(people, key=lambda person: (person.trajectory.start, person.id))

    def _rng(self, *names: object) -> random.Random:
        return random.Random("/".join(map(str, (self.seed, *names))))

    def _arrival_times(self, group: str, per_hour: Mapping[int, float]) -> list[float]:
        times = []
        for count, hour_start in hourly_arrivals(per_hour, self._day_start):
            rng = self._rng(group, "arrivals", hour_start)
            times += sorted(hour_start + rng.uniform(0, 3600.0) for _ in range(count))
        return [t for t in times if self.t0 <= t < self.t1]

    # --- devices ---------------------------------------------------------------------------

    def _carried(self, kind: str, firmware: Firmware, rng: random.Random) -> Carried:
        height, body = CARRY[kind]
        spread = rng.gauss(0.0, self.scenario.radio.device_spread_db)
        return Carried(firmware, height, body, TX_1M_DBM[kind] + spread)

    def _rotating(self, key: str, rng: random.Random, period: float, rpa: bool) -> RotatingAddress:
        return RotatingAddress(
            key=f"{self.seed}/{key}",
            kind=AddressType.RPA if rpa else AddressType.NRPA,
            period_s=period,
            phase_s=rng.uniform(0.0, period),
            irk=rng.randbytes(IRK_BYTES) if rpa else None,
        )

    def _devices(
        self, person_id: str, mix: DeviceMix, rng: random.Random
    ) -> tuple[list[Carried], bytes | None, str]:
        """A phone (with or without the app) and wearables; the app key if the app advertises."""
        platform = "ios" if rng.random() < mix.ios_share else "android"
        has_app = rng.random() < mix.app_share
        foreground = platform == "android" or rng.random() < mix.ios_app_foreground_share
        silent = rng.random() < mix.silent_phone_share
        phone_address = self._rotating(f"{person_id}/phone", rng, ADDRESS_ROTATION_S, rpa=True)
        devices: list[Carried] = []
        app_key = None
        if has_app:
            app_key = sim_app_key(self.seed, person_id)
            if foreground:
                interval = IOS_APP_INTERVAL_S if platform == "ios" else ANDROID_APP_INTERVAL_S
                app = AppFirmware(app_key, self._app_uuid, phone_address, interval)
                devices.append(self._carried("app", app, rng))
        if not silent:
            interval = IPHONE_NEARBY_INTERVAL_S if platform == "ios" else ANDROID_NEARBY_INTERVAL_S
            devices.append(
                self._carried("phone", PhoneFirmware(platform, phone_address, interval), rng)
            )
        for kind, share in (
            ("watch", mix.watch_share),
            ("band", mix.band_share),
            ("hr_strap", mix.hr_strap_share),
        ):
            if rng.random() < share:
                period = rng.uniform(0.9, 1.1) * ADDRESS_ROTATION_S
                rpa = rng.random() < mix.wearable_rpa_share
                address = self._rotating(f"{person_id}/{kind}", rng, period, rpa)
                devices.append(self._carried(kind, WearableFirmware(kind, address), rng))
        return devices, app_key, platform

    # --- walking ---------------------------------------------------------------------------

    def _street_point(self, rng: random.Random) -> Point:
        street = self.scenario.floor.street
        return lerp(street.start, street.end, rng.random())

    def _stop(self, walker: Walker, zone_id: str, dwell: DwellSpec, rng: random.Random) -> None:
        spot = random_point_in(self._zones[zone_id].polygon, rng, SPOT_MARGIN_M)
        walker.walk(self._routes.route(walker.at, spot)[1:])
        walker.stand(dwell.median_s * math.exp(dwell.sigma * rng.gauss(0.0, 1.0)))

    def _next_zone(self, visit: VisitSpec, previous: str | None, rng: random.Random) -> str:
        zones = [zone for zone in visit.zones if zone != previous] or list(visit.zones)
        return rng.choices(zones, weights=[visit.zones[zone].weight for zone in zones])[0]

    def _through_door(self, walker: Walker, door_at: Point, outside: Point, inward: bool) -> None:
        walker.walk([outside, door_at] if inward else [door_at, outside])

    # --- groups ----------------------------------------------------------------------------

    def _shoppers(self) -> list[Person]:
        spec = self.scenario.shoppers
        doors = self.scenario.floor.doors
        entries = [door for door in doors if door.entry] or list(doors)
        exits = [door for door in doors if door.exit] or list(doors)
        people = []
        for index, arrive in enumerate(self._arrival_times("shoppers", spec.per_hour)):
            person_id = f"shopper-{index:05d}"
            rng = self._rng(person_id)
            entry, leave = rng.choice(entries), rng.choice(exits)
            # Walk the pavement to the door so as to turn in to it at the arrival time.
            start, speed = self._street_point(rng), rng.uniform(*WALK_SPEED_M_S)
            walker = Walker(arrive - distance(start, entry.outside) / speed, start, speed, rng)
            walker.walk([entry.outside, entry.at])
            previous = None
            for _ in range(rng.randint(*spec.visit.stops)):
                previous = self._next_zone(spec.visit, previous, rng)
                self._stop(walker, previous, spec.visit.zones[previous], rng)
            if spec.visit.last is not None:
                last = spec.visit.last
                self._stop(walker, last, spec.visit.zones.get(last, _CHECKOUT), rng)
            walker.walk(self._routes.route(walker.at, leave.at)[1:])
            self._through_door(walker, leave.at, leave.outside, inward=False)
            walker.walk([self._street_point(rng)])
            devices, app_key, platform = self._devices(person_id, spec.devices, rng)
            kind = PersonKind.SHOPPER_APP if app_key else PersonKind.SHOPPER
            cart = app_key is not None and rng.random() < spec.abandoned_cart_share
            people.append(
                Person(
                    person_id,
                    kind,
                    walker.trajectory(),
                    tuple(devices),
                    app_key,
                    cart,
                    platform,
                )
            )
        return people

    def _staff(self) -> list[Person]:
        spec = self.scenario.staff
        if spec is None:
            return []
        doors = self.scenario.floor.doors
        door = next((door for door in doors if door.staff), doors[0])
        start = max(self.t0, self.scenario.open_ts) - spec.arrive_before_open_s
        end = min(self.t1, self.scenario.close_ts) + spec.leave_after_close_s
        people = []
        for index in range(spec.count):
            person_id = f"staff-{index:03d}"
            rng = self._rng(person_id)
            walker = Walker(start + rng.uniform(-600.0, 0.0), door.outside, 1.2, rng)
            walker.walk([door.at])
            previous = None
            while walker.t < end:
                previous = self._next_zone(spec.visit, previous, rng)
                self._stop(walker, previous, spec.visit.zones[previous], rng)
            walker.walk([*self._routes.route(walker.at, door.at)[1:], door.outside])
            badge_address = static_random_address(rng.randbytes(6))
            badge = IBeaconFirmware(
                UUID(spec.badge_uuid), 1, index + 1, badge_address, spec.badge_interval_s
            )
            devices = [self._carried("badge", badge, rng)]
            if rng.random() < spec.phone_share:
                mix = DeviceMix(ios_share=0.5)
                phone_devices, _, _ = self._devices(person_id, mix, rng)
                devices += phone_devices
            people.append(Person(person_id, PersonKind.STAFF, walker.trajectory(), tuple(devices)))
        return people

    def _passersby(self) -> list[Person]:
        spec = self.scenario.passersby
        street = self.scenario.floor.street
        people = []
        for index, arrive in enumerate(self._arrival_times("passersby", spec.per_hour)):
            person_id = f"passerby-{index:05d}"
            rng = self._rng(person_id)
            ends = [street.start, street.end]
            rng.shuffle(ends)
            walker = Walker(arrive, ends[0], rng.uniform(*WALK_SPEED_M_S), rng)
            if street.window_spots and rng.random() < spec.window_stop_share:
                spot = rng.choice(street.window_spots)
                kerb = _nearest_on_segment(spot, street.start, street.end)
                walker.walk([kerb, spot])
                dwell = spec.window_stop
                walker.stand(dwell.median_s * math.exp(dwell.sigma * rng.gauss(0.0, 1.0)))
                walker.walk([kerb])
            walker.walk([ends[1]])
            devices, _, platform = self._devices(person_id, spec.devices, rng)
            people.append(
                Person(
                    person_id,
                    PersonKind.PASSERBY,
                    walker.trajectory(),
                    tuple(devices),
                    platform=platform,
                )
            )
        return people


_CHECKOUT = DwellSpec(median_s=90.0, sigma=0.5)


def _nearest_on_segment(point: Point, a: Point, b: Point) -> Point:
    dx, dy = b[0] - a[0], b[1] - a[1]
    length2 = dx * dx + dy * dy
    if length2 == 0:
        return a
    frac = ((point[0] - a[0]) * dx + (point[1] - a[1]) * dy) / length2
    return lerp(a, b, min(1.0, max(0.0, frac)))
