"""What every gateway of a simulated store receives, one tick of simulated time after another.

Each device advertises every ``interval + advDelay`` seconds; for each advertising event and
gateway the packet is lost to the scanner's duty cycle, to collisions and to plain packet loss,
or arrives with an RSSI from ``firmware_sim.channel``'s model. Ticks are computed strictly in
order, each device drawing from its own seeded generator, so the same seed gives the same
receptions whoever asks and however often.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from firmware_sim.channel import (
    FADING_TABLE_BITS,
    FadingTable,
    GatewayChannel,
    Wall,
    airtime_s,
    body_loss_db,
    collision_survival,
)
from firmware_sim.firmware import Emission, Firmware
from firmware_sim.geometry import Point
from firmware_sim.radio import RSSI_CEILING_DBM, RadioParams
from firmware_sim.world import SimAdvert

TICK_S = 1.0
_LEGACY_PDU_BYTES = 31
# Ticks kept for scanners that ask for time ranges (SimScanner), beyond the newest computed one.
_KEPT_TICKS = 120


@dataclass(frozen=True)
class GatewaySite:
    id: str
    position: Point
    height_m: float


class Emitter:
    """One advertising device and where it is."""

    __slots__ = (
        "body_loss_db",
        "event",
        "facing",
        "firmware",
        "height_m",
        "interval_s",
        "key",
        "load",
        "next_t",
        "off",
        "on",
        "position",
        "reach_key",
        "reachable",
        "rng",
        "tx_1m_dbm",
    )

    def __init__(
        self,
        key: str,
        firmware: Firmware,
        *,
        position: Callable[[float], Point],
        facing: Callable[[float], float],
        on: float,
        off: float,
        height_m: float,
        body_loss_db: float,
        tx_1m_dbm: float,
        seed: int,
    ) -> None:
        self.key = key
        self.firmware = firmware
        self.position = position
        self.facing = facing
        self.on, self.off = on, off
        self.height_m = height_m
        self.body_loss_db = body_loss_db
        self.tx_1m_dbm = tx_1m_dbm
        self.interval_s = firmware.interval_s
        self.rng = random.Random(f"{seed}/emitter/{key}")
        self.load = airtime_s(_LEGACY_PDU_BYTES) / self.interval_s
        # Devices start advertising at a random point of their first interval.
        self.next_t = on + self.rng.uniform(0.0, self.interval_s)
        self.event = 0
        # The gateways reachable from where the emitter stood last tick, kept while it stands.
        self.reach_key: tuple[Point, Point, float] | None = None
        self.reachable: list[tuple[int, Point, float, float]] = []


Reception = tuple[float, int, SimAdvert]
"""(time, gateway index, advert)."""


class Airwaves:
    """Receptions at every gateway, tick by tick from ``start``."""

    def __init__(
        self,
        *,
        gateways: Sequence[GatewaySite],
        emitters: Sequence[Emitter],
        walls: Sequence[Wall],
        params: RadioParams,
        seed: int,
        start: float,
        tick_s: float = TICK_S,
    ) -> None:
        self.sites = tuple(gateways)
        self.gateways = {site.id: site.position for site in self.sites}
        self.params = params
        self.start = start
        self.tick_s = tick_s
        self._index = {site.id: i for i, site in enumerate(self.sites)}
        self._channels = [
            GatewayChannel(site.id, site.position, walls, params, seed) for site in self.sites
        ]
        self._fading = FadingTable(params.rician_k_db, seed)
        self._fade_max = max(self._fading.values)
        # Each scanner's windows start at its own offset.
        phase_rng = random.Random(f"{seed}/scan-phase")
        self._scan_phase = [phase_rng.uniform(0, params.scan_interval_s) for _ in self.sites]
        self._pending = sorted(emitters, key=lambda e: (e.on, e.key), reverse=True)
        self._active: list[Emitter] = []
        self._next_tick = 0
        self._computed: deque[tuple[int, list[Reception]]] = deque()

    @property
    def next_tick_start(self) -> float:
        return self.start + self._next_tick * self.tick_s

    @property
    def active_emitters(self) -> int:
        return len(self._active)

    def tick(self) -> tuple[float, float, list[Reception]]:
        """The next tick's receptions at all gateways, in time order, and its time range."""
        index = self._next_tick
        self._next_tick += 1
        t0, t1 = self.start + index * self.tick_s, self.start + (index + 1) * self.tick_s
        receptions = self._receive(t0, t1)
        self._computed.append((index, receptions))
        while len(self._computed) > _KEPT_TICKS:
            self._computed.popleft()
        return t0, t1, receptions

    def adverts_between(self, gateway_id: str, t0: float, t1: float) -> list[SimAdvert]:
        """What one gateway received in ``[t0, t1)``: the interface ``SimScanner`` listens to."""
        gateway = self._index[gateway_id]
        last = math.floor((t1 - self.start) / self.tick_s)
        while self._next_tick <= last:
            self.tick()
        return [
            advert
            for _, receptions in self._computed
            for t, g, advert in receptions
            if g == gateway and t0 <= t < t1
        ]

    def _receive(self, t0: float, t1: float) -> list[Reception]:
        params = self.params
        while self._pending and self._pending[-1].on < t1:
            self._active.append(self._pending.pop())
        self._active = [e for e in self._active if e.off > t0]
        survival = (1.0 - params.packet_loss) * collision_survival(
            sum(e.load for e in self._active), params.capture_share
        )
        out: list[Reception] = []
        for emitter in self._active:
            if emitter.next_t < t1:
                self._emit(emitter, t0, t1, survival, out)
        out.sort(key=lambda r: (r[0], r[1]))
        return out

    def _reachable(
        self, emitter: Emitter, p0: Point, p1: Point, facing: float
    ) -> list[tuple[int, Point, float, float]]:
        """Gateways the emitter may reach this tick: (index, position, height² term, base dBm)."""
        params = self.params
        half_step = math.hypot(p1[0] - p0[0], p1[1] - p0[1]) / 2
        mid = ((p0[0] + p1[0]) / 2, (p0[1] + p1[1]) / 2)
        n10 = 10.0 * params.path_loss_exponent
        reachable = []
        for index, site in enumerate(self.sites):
            gx, gy = site.position
            dz = site.height_m - emitter.height_m
            dz2 = dz * dz
            base = (
                emitter.tx_1m_dbm
                - self._channels[index].static_loss_db(mid)
                - body_loss_db(facing, mid, site.position, emitter.body_loss_db, dz)
            )
            nearest = max(0.0, math.hypot(mid[0] - gx, mid[1] - gy) - half_step)
            best = base - n10 / 2 * math.log10(max(nearest * nearest + dz2, 0.01))
            if best + self._fade_max >= params.sensitivity_dbm:
                reachable.append((index, site.position, dz2, base))
        return reachable

    def _emit(
        self, emitter: Emitter, t0: float, t1: float, survival: float, out: list[Reception]
    ) -> None:
        params = self.params
        rng = emitter.rng
        p0, p1 = emitter.position(t0), emitter.position(t1)
        mid_t = (t0 + t1) / 2
        key = (p0, p1, emitter.facing(mid_t))
        if key != emitter.reach_key:
            emitter.reach_key = key
            emitter.reachable = self._reachable(emitter, p0, p1, key[2])
        reachable = emitter.reachable
        half_n10 = 5.0 * params.path_loss_exponent
        sensitivity = params.sensitivity_dbm
        duty_limited = params.scan_duty() < 1.0
        fading, bits = self._fading.values, FADING_TABLE_BITS
        span = t1 - t0
        while emitter.next_t < t1:
            t, event = emitter.next_t, emitter.event
            emitter.event += 1
            emitter.next_t = t + emitter.interval_s + rng.uniform(0.0, params.adv_delay_max_s)
            if t < t0 or t >= emitter.off or not reachable:
                continue
            frac = (t - t0) / span
            x = p0[0] + frac * (p1[0] - p0[0])
            y = p0[1] + frac * (p1[1] - p0[1])
            emission: Emission | None = None
            for index, (gx, gy), dz2, base in reachable:
                if duty_limited and not self._scanning(index, t):
                    continue
                if rng.random() >= survival:
                    continue
                d2 = (x - gx) ** 2 + (y - gy) ** 2 + dz2
                if d2 < 0.01:
                    d2 = 0.01
                rssi = base - half_n10 * math.log10(d2) + fading[rng.getrandbits(bits)]
                if rssi < sensitivity:
                    continue
                if emission is None:
                    emission = emitter.firmware.emit(t, event)
                if rssi > RSSI_CEILING_DBM:
                    rssi = RSSI_CEILING_DBM
                advert = SimAdvert(t, emission.address, emission.raw, round(rssi))
                out.append((t, index, advert))

    def _scanning(self, gateway: int, t: float) -> bool:
        params = self.params
        return (t - self._scan_phase[gateway]) % params.scan_interval_s < params.scan_window_s
