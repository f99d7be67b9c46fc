"""Zone polygons on a store's floor plan, in metres: the checks a drawn outline must pass."""

from __future__ import annotations

import math
from collections.abc import Sequence

Point = tuple[float, float]


def polygon_area(points: Sequence[Point]) -> float:
    """Signed area (shoelace formula): positive when the points run anticlockwise."""
    total = 0.0
    for (x1, y1), (x2, y2) in zip(points, [*points[1:], points[0]], strict=True):
        total += x1 * y2 - x2 * y1
    return total / 2


def _orientation(a: Point, b: Point, c: Point) -> int:
    cross = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    return 0 if math.isclose(cross, 0.0, abs_tol=1e-12) else (1 if cross > 0 else -1)


def _on_segment(a: Point, b: Point, p: Point) -> bool:
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def segments_intersect(a: Point, b: Point, c: Point, d: Point) -> bool:
    """Whether segments ab and cd share a point (touching counts)."""
    o1, o2, o3, o4 = (
        _orientation(a, b, c),
        _orientation(a, b, d),
        _orientation(c, d, a),
        _orientation(c, d, b),
    )
    if o1 != o2 and o3 != o4:
        return True
    return (
        (o1 == 0 and _on_segment(a, b, c))
        or (o2 == 0 and _on_segment(a, b, d))
        or (o3 == 0 and _on_segment(c, d, a))
        or (o4 == 0 and _on_segment(c, d, b))
    )


def polygon_problem(points: Sequence[Point]) -> str | None:
    """Why ``points`` is not a simple polygon (a zone outline), or None when it is one.

    The outline closes by itself: the last point joins the first and is not repeated.
    """
    if len(points) < 3:
        return f"a polygon needs at least 3 points, got {len(points)}"
    if not all(math.isfinite(x) and math.isfinite(y) for x, y in points):
        return "coordinates must be finite numbers"
    if points[0] == points[-1]:
        return "the polygon closes by itself: do not repeat the first point at the end"
    if len(set(points)) != len(points):
        return "a point appears twice"
    edges = list(zip(points, [*points[1:], points[0]], strict=True))
    count = len(edges)
    for i in range(count):
        for j in range(i + 1, count):
            # Neighbouring edges share a corner; that is not a crossing.
            if j == i + 1 or (i == 0 and j == count - 1):
                continue
            if segments_intersect(*edges[i], *edges[j]):
                return f"edges {i + 1} and {j + 1} cross: the outline must not intersect itself"
    if math.isclose(polygon_area(points), 0.0, abs_tol=1e-9):
        return "the polygon has no area (its points are on one line)"
    return None
