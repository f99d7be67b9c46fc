"""A PNG picture of a scenario's floor plan: zones, walls, doors, gateways, beacons, aisles.

Needs Pillow (``pip install 'storelink[sim]'``). North is up: the street, at negative y, is at
the bottom of the picture.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from firmware_sim.geometry import Point, bounding_box, centroid
from firmware_sim.scenario import EddystoneSpec, Scenario

if TYPE_CHECKING:
    from PIL import ImageDraw, ImageFont

MARGIN_SHARE = 0.08
TARGET_WIDTH_PX = 1400
# Phones are carried about this high: a gateway's enter circle is drawn where it meets them.
PHONE_HEIGHT_M = 1.1

_ZONE_COLOURS = [
    (120, 180, 230),
    (150, 210, 140),
    (240, 200, 110),
    (230, 150, 150),
    (190, 160, 230),
    (130, 210, 200),
    (240, 170, 210),
    (200, 200, 130),
    (160, 190, 160),
    (230, 180, 140),
    (170, 170, 220),
    (210, 160, 120),
]
_WALL_COLOURS = {
    "window": (70, 150, 230),
    "wall": (60, 60, 60),
    "shelf": (150, 100, 50),
    "partition": (130, 130, 130),
}
_GATEWAY = (210, 30, 30)
_IBEACON = (30, 90, 200)
_EDDYSTONE = (130, 50, 180)
_TEXT = (20, 20, 20)


class _Canvas:
    def __init__(self, x0: float, y0: float, x1: float, y1: float) -> None:
        self.x0, self.y1 = x0, y1
        self.scale = TARGET_WIDTH_PX / (x1 - x0)
        self.size = (round((x1 - x0) * self.scale), round((y1 - y0) * self.scale) + 70)

    def px(self, point: Point) -> tuple[float, float]:
        return (point[0] - self.x0) * self.scale, (self.y1 - point[1]) * self.scale + 60


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _label(draw: ImageDraw.ImageDraw, at: tuple[float, float], text: str, size: int) -> None:
    font = _font(size)
    box = draw.textbbox((0, 0), text, font=font)
    width, height = box[2] - box[0], box[3] - box[1]
    draw.text((at[0] - width / 2, at[1] - height / 2), text, fill=_TEXT, font=font)


def render(scenario: Scenario, path: Path) -> None:
    """Draw ``scenario``'s floor plan into the PNG file ``path``."""
    from PIL import Image, ImageDraw

    floor = scenario.floor
    x0, y0, x1, y1 = bounding_box([*floor.outline, *(d.outside for d in floor.doors)])
    street_y = min(floor.street.start[1], floor.street.end[1])
    margin = max(1.5, MARGIN_SHARE * max(x1 - x0, y1 - y0))
    canvas = _Canvas(x0 - margin, min(y0, street_y) - 2.5, x1 + margin, y1 + margin)
    image = Image.new("RGB", canvas.size, (255, 255, 255))
    draw = ImageDraw.Draw(image, "RGBA")

    # The street, clipped to the picture.
    sx0, sx1 = canvas.x0, canvas.x0 + canvas.size[0] / canvas.scale
    street = [canvas.px((sx0, street_y - 1.5)), canvas.px((sx1, street_y + 1.5))]
    draw.rectangle(
        [(street[0][0], street[1][1]), (street[1][0], street[0][1])], fill=(225, 225, 225)
    )
    _label(draw, canvas.px(((sx0 + sx1) / 2, street_y)), "street", 16)
    draw.polygon([canvas.px(p) for p in floor.outline], fill=(248, 248, 244), outline=(0, 0, 0))

    watched = scenario.watched_zones
    for index, zone in enumerate(floor.zones):
        colour = _ZONE_COLOURS[index % len(_ZONE_COLOURS)]
        alpha = 150 if zone.id in watched else 70
        draw.polygon(
            [canvas.px(p) for p in zone.polygon], fill=(*colour, alpha), outline=(*colour, 255)
        )
        name = zone.id + (" (footfall)" if zone.entrance else "")
        # Above the middle, out of the way of a gateway standing there.
        cx, cy = canvas.px(centroid(zone.polygon))
        _label(draw, (cx, cy - 22), name, 15)

    nodes = floor.routes.nodes
    for a, b in floor.routes.edges:
        draw.line([canvas.px(nodes[a]), canvas.px(nodes[b])], fill=(160, 160, 160), width=1)

    for wall in floor.walls:
        colour = _WALL_COLOURS.get(wall.kind, (90, 90, 90))
        width = max(2, round(wall.loss_db / 3))
        draw.line([canvas.px(wall.start), canvas.px(wall.end)], fill=colour, width=width)

    for door in floor.doors:
        px, py = canvas.px(door.at)
        draw.line([canvas.px(door.outside), (px, py)], fill=(40, 160, 60), width=3)
        role = "/".join(r for r, on in (("in", door.entry), ("out", door.exit)) if on)
        _label(draw, (px, py + 0.8 * canvas.scale), f"door {role}", 13)

    for beacon in scenario.beacons:
        bx, by = canvas.px(beacon.at)
        if isinstance(beacon, EddystoneSpec):
            draw.polygon([(bx, by - 7), (bx + 7, by), (bx, by + 7), (bx - 7, by)], fill=_EDDYSTONE)
        else:
            draw.rectangle([(bx - 5, by - 5), (bx + 5, by + 5)], fill=_IBEACON)

    for gateway in scenario.gateways:
        gx, gy = canvas.px(gateway.at)
        reach = scenario.enter_distance(gateway)
        drop = gateway.height_m - PHONE_HEIGHT_M
        radius = math.sqrt(max(0.0, reach * reach - drop * drop)) * canvas.scale
        draw.ellipse(
            [(gx - radius, gy - radius), (gx + radius, gy + radius)],
            outline=(*_GATEWAY, 200),
            width=2,
        )
        draw.ellipse([(gx - 8, gy - 8), (gx + 8, gy + 8)], fill=_GATEWAY)
        _label(draw, (gx, gy + 16), gateway.id, 13)

    gateways = f"{len(scenario.gateways)} gateway" + ("s" if len(scenario.gateways) > 1 else "")
    title = f"{scenario.name}: {len(floor.zones)} zones, {gateways}"
    draw.text((12, 8), title, fill=_TEXT, font=_font(22))
    legend = (
        "red: gateway and where phones enter its zone  blue square: iBeacon  purple: Eddystone  "
        "walls: dark, windows: blue, shelves: brown  grey lines: aisles"
    )
    draw.text((12, 36), legend, fill=(70, 70, 70), font=_font(14))
    # A 5 m scale bar in the bottom-left corner.
    left, bottom = 12, canvas.size[1] - 14
    draw.line([(left, bottom), (left + 5 * canvas.scale, bottom)], fill=_TEXT, width=3)
    draw.text((left + 5 * canvas.scale + 6, bottom - 9), "5 m", fill=_TEXT, font=_font(13))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)
