"""A small store in which simulated shoppers walk in, linger near the entrance and leave.

Coordinates are metres. The shop front runs along ``y = door[1]`` and the street lies at smaller
``y``. Times given to shoppers are seconds since the start of the simulation; adverts carry unix
time. Every random choice is derived from the seed and the name of what it decides rather than
drawn from one shared stream, so the adverts of a time range come out the same however a caller
splits the range into queries.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from uuid import UUID

from firmware_sim.frames import ibeacon_frame, nearby_info_frame
from firmware_sim.radio import PathLossModel
from storelink.tokens import (
    APP_KEY_BYTES,
    TOKEN_WINDOW_S,
    app_token,
    token_major_minor,
    token_window,
)

Point = tuple[float, float]

WALK_SPEED_M_S = 1.2
STREET_DISTANCE_M = 15.0
# Phones rotate their random address about every 15 minutes; the app token rotates with it so
# that the two cannot be linked across a rotation.
ADDRESS_ROTATION_S = TOKEN_WINDOW_S
PHONE_MEASURED_POWER = -59
STORE_BEACON_MEASURED_POWER = -59
STORE_BEACON_INTERVAL_S = 0.1
STORE_BEACON_RADIUS_M = 1.5
# The Bluetooth spec adds 0-10 ms of random delay to every advertising event.
ADV_DELAY_MAX_S = 0.01
PACKET_LOSS = 0.1
RECEIVER_SENSITIVITY_DBM = -95

DEMO_STORE_BEACON: tuple[UUID, int, int] = (UUID("f7826da6-4fa2-4e98-8024-bc5b71e0893e"), 100, 1)
DEMO_STORE_BEACON_ID = f"{DEMO_STORE_BEACON[0]}:{DEMO_STORE_BEACON[1]}:{DEMO_STORE_BEACON[2]}"
"""The demo beacon in the ``uuid:major:minor`` form a gateway's ``store_beacons`` setting takes."""


@dataclass(frozen=True)
class SimShopper:
    person_id: str
    app_key: bytes | None
    """The shopper app's key; None for a phone without the app."""
    arrive_s: float
    """When the shopper steps through the door."""
    stay_s: float
    """How long the shopper lingers near the entrance gateway."""

    def __post_init__(self) -> None:
        if self.app_key is not None and len(self.app_key) != APP_KEY_BYTES:
            raise ValueError(f"an app key is {APP_KEY_BYTES} bytes")
        if self.stay_s < 0:
            raise ValueError("stay_s must not be negative")


@dataclass(frozen=True)
class SimAdvert:
    t: float
    """Unix time of reception."""
    address: str
    raw: bytes
    """The advertising data as sent over the air."""
    rssi: int


@dataclass(frozen=True)
class _Device:
    key: str
    """Names the device in the keys from which its random choices are derived."""
    on_s: float
    off_s: float
    interval_s: float
    position: Callable[[float], Point]
    frame: Callable[[float], bytes]
    address: Callable[[float], str]


def _distance(a: Point, b: Point) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def _around(center: Point, radius: float, angle: float) -> Point:
    return center[0] + radius * math.cos(angle), center[1] + radius * math.sin(angle)


def _walk(waypoints: Sequence[tuple[float, Point]]) -> Callable[[float], Point]:
    """Position along straight legs between ``(time, point)`` waypoints."""

    def position(t: float) -> Point:
        for (ta, pa), (tb, pb) in pairwise(waypoints):
            if t <= tb:
                frac = 0.0 if tb <= ta else max(0.0, (t - ta) / (tb - ta))
                return pa[0] + frac * (pb[0] - pa[0]), pa[1] + frac * (pb[1] - pa[1])
        return waypoints[-1][1]

    return position


def _format_address(octets: bytes) -> str:
    return ":".join(f"{octet:02X}" for octet in octets)


class StoreWorld:
    """Shoppers' phones and the store's own beacons, as heard by each gateway."""

    def __init__(
        self,
        *,
        app_uuid: str,
        gateways: dict[str, Point],
        shoppers: Sequence[SimShopper],
        store_beacons: Sequence[tuple[UUID, int, int]],
        start: float,
        seed: int,
        door: Point = (0.0, 0.0),
        radio: PathLossModel | None = None,
    ) -> None:
        if not gateways:
            raise ValueError("a store needs at least one gateway")
        person_ids = [shopper.person_id for shopper in shoppers]
        if len(set(person_ids)) != len(person_ids):
            raise ValueError("person ids must be unique")
        self.app_uuid = UUID(app_uuid)
        self.gateways = dict(gateways)
        self.start = start
        self.seed = seed
        self.door = door
        self.radio = radio or PathLossModel()
        # Shoppers linger by the gateway nearest the door: that is where footfall is counted.
        self.entrance: Point = min(gateways.values(), key=lambda p: _distance(p, door))
        self._devices = [self._shopper_device(shopper) for shopper in shoppers] + [
            self._beacon_device(index, beacon, len(store_beacons))
            for index, beacon in enumerate(store_beacons)
        ]

    def adverts_between(self, gateway_id: str, t0: float, t1: float) -> list[SimAdvert]:
        """What ``gateway_id`` receives in the unix time range ``[t0, t1)``, in time order."""
        gateway = self.gateways[gateway_id]
        lo, hi = t0 - self.start, t1 - self.start
        adverts: list[SimAdvert] = []
        for device in self._devices:
            # One event of margin either side absorbs rounding; _receive filters exactly.
            first = max(0, math.floor((lo - device.on_s - ADV_DELAY_MAX_S) / device.interval_s))
            last = math.ceil((min(hi, device.off_s) - device.on_s) / device.interval_s)
            for event in range(first, last + 1):
                advert = self._receive(device, event, gateway_id, gateway, t0, t1)
                if advert is not None:
                    adverts.append(advert)
        adverts.sort(key=lambda advert: advert.t)
        return adverts

    def _rng(self, *names: object) -> random.Random:
        return random.Random("/".join(map(str, (self.seed, *names))))

    def _receive(
        self, device: _Device, event: int, gateway_id: str, gateway: Point, t0: float, t1: float
    ) -> SimAdvert | None:
        t = device.on_s + event * device.interval_s
        t += self._rng(device.key, event).uniform(0.0, ADV_DELAY_MAX_S)
        unix_t = self.start + t
        # Compared in unix time, the unit of the query, so that adjacent ranges never overlap.
        if not (t0 <= unix_t < t1 and t < device.off_s):
            return None
        # Each gateway hears the same event through its own fading and losses.
        channel = self._rng(device.key, event, gateway_id)
        if channel.random() < PACKET_LOSS:
            return None
        rssi = self.radio.rssi(_distance(device.position(t), gateway), channel)
        if rssi < RECEIVER_SENSITIVITY_DBM:
            return None
        return SimAdvert(
            t=unix_t, address=device.address(unix_t), raw=device.frame(unix_t), rssi=rssi
        )

    def _shopper_device(self, shopper: SimShopper) -> _Device:
        key = f"shopper/{shopper.person_id}"
        rng = self._rng(key)
        door = self.door
        street = (door[0] + rng.uniform(-6.0, 6.0), door[1] - STREET_DISTANCE_M)
        radius, angle = rng.uniform(1.0, 2.5), rng.uniform(0.15 * math.pi, 0.85 * math.pi)
        spot = _around(self.entrance, radius, angle)
        interval_s = rng.uniform(0.1, 0.3)

        outside_s = _distance(street, door) / WALK_SPEED_M_S
        inside_s = _distance(door, spot) / WALK_SPEED_M_S
        at_spot = shopper.arrive_s + inside_s
        leave_spot = at_spot + shopper.stay_s
        waypoints = [
            (shopper.arrive_s - outside_s, street),
            (shopper.arrive_s, door),
            (at_spot, spot),
            (leave_spot, spot),
            (leave_spot + inside_s, door),
            (leave_spot + inside_s + outside_s, street),
        ]

        def address(unix_t: float) -> str:
            return _format_address(self._private_identity(key, unix_t)[:6])

        if shopper.app_key is not None:
            app_key = shopper.app_key

            def frame(unix_t: float) -> bytes:
                major, minor = token_major_minor(app_token(app_key, token_window(unix_t)))
                return ibeacon_frame(self.app_uuid, major, minor, PHONE_MEASURED_POWER)

        else:

            def frame(unix_t: float) -> bytes:
                return nearby_info_frame(self._private_identity(key, unix_t)[6:])

        return _Device(
            key=key,
            on_s=waypoints[0][0],
            off_s=waypoints[-1][0],
            interval_s=interval_s,
            position=_walk(waypoints),
            frame=frame,
            address=address,
        )

    def _private_identity(self, key: str, unix_t: float) -> bytes:
        """This rotation's resolvable private address (6 bytes, top bits 01), then the 3-byte
        Nearby Info tag, which changes with it."""
        rotation = int(unix_t // ADDRESS_ROTATION_S)
        octets = bytearray(self._rng(key, "address", rotation).randbytes(9))
        octets[0] = octets[0] & 0x3F | 0x40
        return bytes(octets)

    def _beacon_device(self, index: int, beacon: tuple[UUID, int, int], count: int) -> _Device:
        uuid, major, minor = beacon
        key = f"beacon/{uuid}/{major}/{minor}"
        # Spread the store's beacons on a circle around the entrance gateway.
        angle = 2 * math.pi * index / count + math.pi / 2
        place = _around(self.entrance, STORE_BEACON_RADIUS_M, angle)
        octets = bytearray(self._rng(key, "address").randbytes(6))
        octets[0] |= 0xC0  # a static random address: a beacon has no reason to rotate it
        address = _format_address(bytes(octets))
        raw = ibeacon_frame(uuid, major, minor, STORE_BEACON_MEASURED_POWER)
        return _Device(
            key=key,
            on_s=0.0,
            off_s=math.inf,
            interval_s=STORE_BEACON_INTERVAL_S,
            position=lambda _t: place,
            frame=lambda _t: raw,
            address=lambda _t: address,
        )


def demo_app_keys(count: int, seed: int = 0) -> list[bytes]:
    """Fixed app keys, so a demo cloud can register the shoppers a demo world simulates."""
    return [
        hashlib.sha256(f"storelink demo shopper {seed}/{index}".encode()).digest()
        for index in range(count)
    ]


def demo_world(
    app_uuid: str,
    start: float,
    app_keys: Sequence[bytes],
    anonymous: int = 2,
    seed: int = 0,
    gateway_id: str = "gw-1",
    rounds: int = 1,
    round_s: float = 120.0,
) -> StoreWorld:
    """One entrance gateway, one store beacon (``DEMO_STORE_BEACON``) and a few shoppers.

    Shoppers step in within the first 18 seconds of each round and stay 15 to 30, so a 30-second
    demo sees every app shopper enter. Each of ``rounds`` brings everyone back ``round_s`` later,
    as returning visitors whose phones have a new address by then.
    """
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    rng = random.Random(f"{seed}/demo")
    people: list[tuple[str, bytes | None]] = [
        (f"app-{index}", key) for index, key in enumerate(app_keys)
    ]
    people += [(f"walk-in-{index}", None) for index in range(anonymous)]
    shoppers = [
        SimShopper(
            person_id if round_ == 0 else f"{person_id}/visit-{round_}",
            key,
            arrive_s=round_ * round_s + rng.uniform(1.0, 18.0),
            stay_s=rng.uniform(15.0, 30.0),
        )
        for round_ in range(rounds)
        for person_id, key in people
    ]
    return StoreWorld(
        app_uuid=app_uuid,
        gateways={gateway_id: (0.0, 1.0)},
        shoppers=shoppers,
        store_beacons=[DEMO_STORE_BEACON],
        start=start,
        seed=seed,
        door=(0.0, 0.0),
    )
