"""Where a person is at any moment: straight walking legs and standing still, one after another."""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from firmware_sim.geometry import Point, Polygon, contains, distance, inside_intervals, lerp

_EPS = 1e-6


@dataclass(frozen=True)
class Leg:
    t0: float
    t1: float
    a: Point
    b: Point
    facing: float
    """Heading in radians: the walking direction, or where the person looks while standing."""


class Trajectory:
    """A person's path in unix time: before the first leg and after the last they are elsewhere."""

    def __init__(self, legs: Sequence[Leg]) -> None:
        if not legs:
            raise ValueError("a trajectory has at least one leg")
        self.legs = tuple(legs)
        self._starts = [leg.t0 for leg in self.legs]

    @property
    def start(self) -> float:
        return self.legs[0].t0

    @property
    def end(self) -> float:
        return self.legs[-1].t1

    def _leg(self, t: float) -> Leg:
        index = max(0, bisect.bisect_right(self._starts, t) - 1)
        return self.legs[index]

    def position(self, t: float) -> Point:
        leg = self._leg(t)
        if leg.t1 <= leg.t0:
            return leg.b
        frac = min(1.0, max(0.0, (t - leg.t0) / (leg.t1 - leg.t0)))
        return lerp(leg.a, leg.b, frac)

    def facing(self, t: float) -> float:
        return self._leg(t).facing

    def inside(self, polygon: Polygon) -> list[tuple[float, float]]:
        """The time intervals spent inside ``polygon``, merged where they touch."""
        spans: list[tuple[float, float]] = []
        for leg in self.legs:
            duration = leg.t1 - leg.t0
            if leg.a == leg.b or duration <= 0:
                parts = [(0.0, 1.0)] if contains(polygon, leg.a) else []
            else:
                parts = inside_intervals(leg.a, leg.b, polygon)
            for fa, fb in parts:
                ta, tb = leg.t0 + fa * duration, leg.t0 + fb * duration
                if spans and ta - spans[-1][1] <= _EPS:
                    spans[-1] = (spans[-1][0], max(spans[-1][1], tb))
                else:
                    spans.append((ta, tb))
        return [(a, b) for a, b in spans if b > a]


class Walker:
    """Builds a trajectory: walk through points at a steady speed, stand, walk on."""

    def __init__(self, t: float, at: Point, speed_m_s: float, rng: random.Random) -> None:
        if speed_m_s <= 0:
            raise ValueError("walking speed must be positive")
        self.t = t
        self.at = at
        self.speed = speed_m_s
        self._rng = rng
        self._facing = rng.uniform(-math.pi, math.pi)
        self.legs: list[Leg] = []

    def walk(self, points: Sequence[Point]) -> Walker:
        for point in points:
            length = distance(self.at, point)
            if length < _EPS:
                continue
            self._facing = math.atan2(point[1] - self.at[1], point[0] - self.at[0])
            end = self.t + length / self.speed
            self.legs.append(Leg(self.t, end, self.at, point, self._facing))
            self.t, self.at = end, point
        return self

    def stand(self, seconds: float) -> Walker:
        """Stand still, turned towards a random direction (shelves, a window, a colleague)."""
        if seconds > 0:
            facing = self._rng.uniform(-math.pi, math.pi)
            self.legs.append(Leg(self.t, self.t + seconds, self.at, self.at, facing))
            self.t += seconds
        return self

    def trajectory(self) -> Trajectory:
        return Trajectory(self.legs)
