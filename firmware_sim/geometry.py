"""Plane geometry for floor plans: points in metres, polygons, wall crossings, walking routes."""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Mapping, Sequence
from itertools import pairwise

Point = tuple[float, float]
Polygon = tuple[Point, ...]

_EPS = 1e-12


def distance(a: Point, b: Point) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def lerp(a: Point, b: Point, frac: float) -> Point:
    return a[0] + frac * (b[0] - a[0]), a[1] + frac * (b[1] - a[1])


def contains(polygon: Polygon, point: Point) -> bool:
    """Even-odd rule; a point exactly on an edge may fall either side."""
    x, y = point
    inside = False
    for (x1, y1), (x2, y2) in pairwise((*polygon, polygon[0])):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def bounding_box(points: Sequence[Point]) -> tuple[float, float, float, float]:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def centroid(polygon: Polygon) -> Point:
    """The area centroid (where a label goes)."""
    area = cx = cy = 0.0
    for (x1, y1), (x2, y2) in pairwise((*polygon, polygon[0])):
        cross = x1 * y2 - x2 * y1
        area += cross
        cx += (x1 + x2) * cross
        cy += (y1 + y2) * cross
    if abs(area) < _EPS:
        xs, ys = zip(*polygon, strict=True)
        return sum(xs) / len(xs), sum(ys) / len(ys)
    return cx / (3 * area), cy / (3 * area)


def segment_crossing(p1: Point, p2: Point, q1: Point, q2: Point) -> float | None:
    """Where segment p1-p2 crosses segment q1-q2, as a fraction of p1-p2; None if it does not."""
    rx, ry = p2[0] - p1[0], p2[1] - p1[1]
    sx, sy = q2[0] - q1[0], q2[1] - q1[1]
    denom = rx * sy - ry * sx
    if abs(denom) < _EPS:
        return None  # parallel: a path grazing along a wall does not go through it
    qpx, qpy = q1[0] - p1[0], q1[1] - p1[1]
    t = (qpx * sy - qpy * sx) / denom
    u = (qpx * ry - qpy * rx) / denom
    if 0.0 <= t <= 1.0 and 0.0 <= u <= 1.0:
        return t
    return None


def crossings(p1: Point, p2: Point, polygon: Polygon) -> list[float]:
    """Fractions of p1-p2, sorted, at which it crosses the polygon's edges."""
    hits = [
        t
        for q1, q2 in pairwise((*polygon, polygon[0]))
        if (t := segment_crossing(p1, p2, q1, q2)) is not None
    ]
    return sorted(hits)


def inside_intervals(p1: Point, p2: Point, polygon: Polygon) -> list[tuple[float, float]]:
    """The fractions of segment p1-p2 that lie inside the polygon, as (start, end) pairs."""
    cuts = [0.0, *crossings(p1, p2, polygon), 1.0]
    spans: list[tuple[float, float]] = []
    for a, b in pairwise(cuts):
        if b - a <= _EPS:
            continue
        if contains(polygon, lerp(p1, p2, (a + b) / 2)):
            if spans and abs(spans[-1][1] - a) <= _EPS:
                spans[-1] = (spans[-1][0], b)
            else:
                spans.append((a, b))
    return spans


def random_point_in(polygon: Polygon, rng: random.Random, margin: float = 0.0) -> Point:
    """Uniform in the polygon by rejection, at least ``margin`` from its bounding box's sides."""
    x0, y0, x1, y1 = bounding_box(polygon)
    for _ in range(1000):
        point = (rng.uniform(x0 + margin, x1 - margin), rng.uniform(y0 + margin, y1 - margin))
        if contains(polygon, point):
            return point
    return centroid(polygon)


class RouteGraph:
    """Aisles as a graph of named points; people walk along its edges between places.

    Without nodes, everyone walks in straight lines.
    """

    def __init__(self, nodes: Mapping[str, Point], edges: Sequence[tuple[str, str]]) -> None:
        self.nodes = dict(nodes)
        self._adjacent: dict[str, list[tuple[str, float]]] = {name: [] for name in self.nodes}
        for a, b in edges:
            if a not in self.nodes or b not in self.nodes:
                raise ValueError(f"route edge {a}-{b} names an unknown node")
            length = distance(self.nodes[a], self.nodes[b])
            self._adjacent[a].append((b, length))
            self._adjacent[b].append((a, length))

    def nearest(self, point: Point) -> str:
        return min(self.nodes, key=lambda name: (distance(self.nodes[name], point), name))

    def route(self, start: Point, end: Point) -> list[Point]:
        """The points to walk through from ``start`` to ``end``, both included."""
        if not self.nodes:
            return [start, end]
        a, b = self.nearest(start), self.nearest(end)
        via = [self.nodes[name] for name in self._shortest(a, b)]
        # Short hops need no detour through the aisle network.
        if distance(start, end) <= distance(start, via[0]) + distance(via[-1], end):
            return [start, end]
        return [start, *via, end]

    def _shortest(self, a: str, b: str) -> list[str]:
        best: dict[str, float] = {a: 0.0}
        previous: dict[str, str] = {}
        queue: list[tuple[float, str]] = [(0.0, a)]
        while queue:
            cost, name = heapq.heappop(queue)
            if name == b:
                break
            if cost > best[name]:
                continue
            for other, length in self._adjacent[name]:
                if cost + length < best.get(other, math.inf):
                    best[other] = cost + length
                    previous[other] = name
                    heapq.heappush(queue, (cost + length, other))
        if b not in best:
            raise ValueError(f"no route from {a} to {b}")
        path = [b]
        while path[-1] != a:
            path.append(previous[path[-1]])
        return path[::-1]
