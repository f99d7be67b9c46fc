"""The radio channel between a device somewhere in the store and one gateway.

Split by how fast each part changes:

- ``GatewayChannel.static_loss_db``: walls between the point and the gateway, and spatially
  correlated shadowing (stronger without line of sight), both fixed for a place (cached on a
  grid of ``CELL_M`` cells);
- ``body_loss_db``: the carrier's own body when it stands between device and gateway;
- ``FadingTable``: per-packet Rician fast fading (each packet hops channels and multipath);
- ``collision_survival``: the chance a packet is not destroyed by another one on air.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from firmware_sim.geometry import Point, segment_crossing
from firmware_sim.radio import RadioParams

CELL_M = 0.5
FADING_TABLE_BITS = 12
DEEPEST_FADE_DB = -30.0
AIRTIME_OVERHEAD_BYTES = 16
"""Preamble, access address, PDU header, advertiser address and CRC around the AD bytes."""
AIRTIME_S_PER_BYTE = 8e-6  # LE 1M PHY


@dataclass(frozen=True)
class Wall:
    a: Point
    b: Point
    loss_db: float
    kind: str = "wall"


def airtime_s(payload_bytes: int) -> float:
    """Time one advertising PDU occupies a channel."""
    return (payload_bytes + AIRTIME_OVERHEAD_BYTES) * AIRTIME_S_PER_BYTE


def collision_survival(load: float, capture_share: float) -> float:
    """Pure ALOHA: a packet survives when nothing else starts within its airtime either side.

    ``load`` is the offered load in packets per packet-time on one advertising channel; only
    ``capture_share`` of it is strong enough, relative to the wanted packet, to destroy it.
    """
    return math.exp(-2.0 * load * capture_share)


def body_loss_db(
    facing: float, device: Point, gateway: Point, max_db: float, height_diff_m: float = 0.0
) -> float:
    """Attenuation by the carrier's torso: none facing the gateway, ``max_db`` with the back to it.

    ``facing`` is the carrier's heading in radians. The loss grows with the square of the
    half-angle cosine, so it is concentrated behind the body; and it fades as the path steepens
    (a gateway on the ceiling right above is reached over the shoulder, not through the chest).
    """
    dx, dy = gateway[0] - device[0], gateway[1] - device[1]
    norm = math.hypot(dx, dy)
    if norm < 1e-9 or max_db <= 0:
        return 0.0
    cos = (math.cos(facing) * dx + math.sin(facing) * dy) / norm
    horizontal = norm / math.hypot(norm, height_diff_m)
    return max_db * horizontal * ((1.0 - cos) / 2.0) ** 2


class FadingTable:
    """Rician fast-fading gains in dB (mean power 0 dB), drawn by index from a fixed table."""

    def __init__(self, k_db: float, seed: int = 0) -> None:
        k = 10 ** (k_db / 10)
        los, scatter = math.sqrt(k / (k + 1)), math.sqrt(1 / (2 * (k + 1)))
        rng = random.Random(f"fading/{k_db}/{seed}")
        values = []
        for _ in range(1 << FADING_TABLE_BITS):
            re, im = los + rng.gauss(0, scatter), rng.gauss(0, scatter)
            values.append(max(DEEPEST_FADE_DB, 10 * math.log10(re * re + im * im + 1e-12)))
        self.values = values

    def draw(self, rng: random.Random) -> float:
        return self.values[rng.getrandbits(FADING_TABLE_BITS)]


class GatewayChannel:
    """Walls and shadowing between any point of the floor and one gateway, cached per cell."""

    def __init__(
        self,
        gateway_id: str,
        position: Point,
        walls: Sequence[Wall],
        params: RadioParams,
        seed: int,
    ) -> None:
        self.gateway_id = gateway_id
        self.position = position
        self._walls = tuple(walls)
        self._params = params
        self._seed = seed
        self._nodes: dict[tuple[int, int], float] = {}
        self._cells: dict[tuple[int, int], float] = {}

    def static_loss_db(self, point: Point) -> float:
        """Wall loss minus shadowing at ``point``: positive weakens the signal."""
        cell = (math.floor(point[0] / CELL_M), math.floor(point[1] / CELL_M))
        loss = self._cells.get(cell)
        if loss is None:
            center = ((cell[0] + 0.5) * CELL_M, (cell[1] + 0.5) * CELL_M)
            walls = self.wall_loss_db(center)
            loss = walls - self.shadowing_sigma_db(walls) * self.shadowing(center)
            self._cells[cell] = loss
        return loss

    def shadowing_sigma_db(self, wall_loss_db: float) -> float:
        """From the line-of-sight spread to the NLOS one as the walls in the way get heavier (a
        glass window barely obstructs; a brick wall or a row of shelves does)."""
        params = self._params
        weight = min(1.0, wall_loss_db / params.nlos_wall_db)
        return params.shadowing_db + weight * (params.shadowing_nlos_db - params.shadowing_db)

    def wall_loss_db(self, point: Point) -> float:
        return sum(
            wall.loss_db
            for wall in self._walls
            if segment_crossing(point, self.position, wall.a, wall.b) is not None
        )

    def shadowing(self, point: Point) -> float:
        """Standard normal values on a grid as fine as the decorrelation distance, interpolated.

        Normalised by the interpolation weights so that the standard deviation stays 1
        everywhere, between grid nodes too; the caller scales it to dB (LOS or NLOS).
        """
        step = self._params.shadowing_decorrelation_m
        gx, gy = point[0] / step, point[1] / step
        ix, iy = math.floor(gx), math.floor(gy)
        fx, fy = gx - ix, gy - iy
        weights = (
            ((ix, iy), (1 - fx) * (1 - fy)),
            ((ix + 1, iy), fx * (1 - fy)),
            ((ix, iy + 1), (1 - fx) * fy),
            ((ix + 1, iy + 1), fx * fy),
        )
        value = sum(w * self._node(node) for node, w in weights)
        return value / math.sqrt(sum(w * w for _, w in weights))

    def _node(self, node: tuple[int, int]) -> float:
        value = self._nodes.get(node)
        if value is None:
            rng = random.Random(f"{self._seed}/shadowing/{self.gateway_id}/{node[0]}/{node[1]}")
            value = self._nodes[node] = rng.gauss(0.0, 1.0)
        return value
