"""Received signal strength from distance: the log-distance path-loss model with shadowing."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

RSSI_FLOOR_DBM = -100
RSSI_CEILING_DBM = 0
# The model diverges at 0 m; closer than this a phone is effectively on the antenna.
_MIN_DISTANCE_M = 0.1


@dataclass(frozen=True)
class PathLossModel:
    rssi_at_1m: float = -59.0
    exponent: float = 2.0
    """2 in free space, 2.5 to 4 indoors through shelves and people."""
    shadowing_db: float = 2.5
    """Standard deviation of the log-normal shadowing around the mean."""

    def mean_rssi(self, distance_m: float) -> float:
        distance = max(distance_m, _MIN_DISTANCE_M)
        return self.rssi_at_1m - 10.0 * self.exponent * math.log10(distance)

    def rssi(self, distance_m: float, rng: random.Random) -> int:
        value = self.mean_rssi(distance_m) + rng.gauss(0.0, self.shadowing_db)
        return round(min(RSSI_CEILING_DBM, max(RSSI_FLOOR_DBM, value)))
