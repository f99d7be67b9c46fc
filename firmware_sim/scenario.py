"""A store scenario as written in YAML: floor plan, gateways, beacons and the people who come.

Coordinates are metres on the floor plan, x to the right and y into the store; the street lies at
negative y. docs/simulator.md describes every key; ``firmware_sim/scenarios/`` holds the shipped
scenarios, which ``load_scenario`` finds by name.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from firmware_sim.radio import RadioParams
from storelink.settings import StorelinkSettings

SCENARIO_PACKAGE = "firmware_sim.scenarios"

Coordinate = tuple[float, float]
Share = Annotated[float, Field(ge=0, le=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WallSpec(_Model):
    start: Coordinate = Field(alias="from")
    end: Coordinate = Field(alias="to")
    loss_db: float = Field(ge=0, description="attenuation of a signal crossing it")
    kind: str = "wall"
    """wall, window, shelf, door... (drawn differently)."""


class ZoneSpec(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    polygon: tuple[Coordinate, ...] = Field(min_length=3)
    entrance: bool = False
    """Entering the store is counted where a gateway watches an entrance zone."""


class DoorSpec(_Model):
    at: Coordinate
    outside: Coordinate
    """Where on the pavement people turn to the door."""
    entry: bool = True
    exit: bool = True
    staff: bool = False


class StreetSpec(_Model):
    start: Coordinate = Field(alias="from")
    end: Coordinate = Field(alias="to")
    window_spots: tuple[Coordinate, ...] = ()
    """Where window-shoppers stop on the pavement."""


class RoutesSpec(_Model):
    nodes: dict[str, Coordinate] = {}
    edges: tuple[tuple[str, str], ...] = ()


class FloorSpec(_Model):
    outline: tuple[Coordinate, ...] = Field(min_length=3)
    doors: tuple[DoorSpec, ...] = Field(min_length=1)
    street: StreetSpec
    walls: tuple[WallSpec, ...] = ()
    zones: tuple[ZoneSpec, ...] = Field(min_length=1)
    routes: RoutesSpec = RoutesSpec()

    @model_validator(mode="after")
    def _unique_zones(self) -> FloorSpec:
        ids = [zone.id for zone in self.zones]
        if len(set(ids)) != len(ids):
            raise ValueError("zone ids must be unique")
        return self


class GatewaySpec(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    at: Coordinate
    zone: str
    height_m: float = Field(default=2.5, ge=0)
    enter_distance_m: float | None = Field(default=None, gt=0)
    """Overrides ``gateway_defaults.enter_distance_m`` for this gateway."""
    enter_confirm_s: float | None = Field(default=None, ge=0)
    """Overrides ``gateway_defaults.enter_confirm_s`` for this gateway."""
    companion_window_s: float | None = Field(default=None, ge=0)
    """Overrides ``gateway_defaults.companion_window_s`` for this gateway."""
    arrival_heard_max_s: float | None = Field(default=None, ge=0)
    """Overrides ``gateway_defaults.arrival_heard_max_s`` for this gateway."""


class GatewayDefaults(_Model):
    """Presence settings of every simulated gateway (``gateway.config.GatewaySettings``)."""

    enter_distance_m: float = Field(default=3.0, gt=0)
    exit_timeout_s: float = Field(default=20.0, gt=0)
    dwell_interval_s: float = Field(default=60.0, gt=0)
    rssi_at_1m: int = -59
    path_loss_exponent: float = Field(default=2.0, gt=0)
    smoothing_alpha: float = Field(default=0.3, gt=0, le=1)
    # Cross-gateway arbitration; None: the gateway's own default.
    arbitration: bool | None = None
    arbitration_margin_db: float | None = Field(default=None, ge=0)
    arbitration_hold_s: float | None = Field(default=None, ge=0)
    arbitration_stale_s: float | None = Field(default=None, gt=0)
    enter_confirm_s: float | None = Field(default=None, ge=0)
    companion_window_s: float | None = Field(default=None, ge=0)
    arrival_heard_max_s: float | None = Field(default=None, ge=0)


class IBeaconSpec(_Model):
    type: Literal["ibeacon"]
    uuid: str
    major: int = Field(ge=0, le=0xFFFF)
    minor: int = Field(ge=0, le=0xFFFF)
    at: Coordinate
    height_m: float = 2.0
    interval_s: float = Field(default=1.0, gt=0)
    measured_power: int = -59
    store: bool = True
    """The store's own beacon, listed in the gateways' ``store_beacons`` and so ignored."""


class EddystoneSpec(_Model):
    type: Literal["eddystone"]
    namespace: str = Field(pattern=r"^[0-9a-fA-F]{20}$")
    instance: str = Field(pattern=r"^[0-9a-fA-F]{12}$")
    url: str | None = None
    at: Coordinate
    height_m: float = 2.0
    interval_s: float = Field(default=1.0, gt=0)
    tx_power_0m: int = -18
    tlm_every: int = Field(default=10, ge=2)
    battery_mv: int = Field(default=3000, ge=0, le=0xFFFF)
    drain_mv_per_day: float = Field(default=1.0, ge=0)
    powered_on_days_ago: float = Field(default=30.0, ge=0)
    temperature_c: float = 21.0
    store: bool = True
    """The store's own beacon, in the gateways' ``store_beacons`` as ``namespace:instance``."""


class DwellSpec(_Model):
    weight: float = Field(default=1.0, gt=0)
    """How likely this zone is chosen for the next stop, relative to the others."""
    median_s: float = Field(gt=0)
    sigma: float = Field(default=0.6, ge=0)
    """Log-normal shape: dwell = median * exp(sigma * N(0, 1))."""


class VisitSpec(_Model):
    stops: tuple[int, int] = (1, 4)
    """Least and most zone stops in one visit (each drawn uniformly)."""
    zones: dict[str, DwellSpec]
    last: str | None = None
    """A zone every visit ends in (the checkout), whatever else it chose."""


class DeviceMix(_Model):
    """What the people of one group carry."""

    app_share: Share = 0.0
    """Shoppers with the app and its consent, so that it advertises the rotating token."""
    ios_share: Share = 0.5
    ios_app_foreground_share: Share = 0.5
    """iOS lets the app advertise only in the foreground; backgrounded, only the phone is heard."""
    silent_phone_share: Share = 0.0
    """Phones that advertise nothing at all (not counted as visible)."""
    watch_share: Share = 0.0
    band_share: Share = 0.0
    hr_strap_share: Share = 0.0
    wearable_rpa_share: Share = 0.8
    """Wearables with a resolvable private address; the others use non-resolvable ones."""


class ShoppersSpec(_Model):
    per_hour: dict[int, float]
    """Arrivals in each hour of the day (0-23), the hour the key names."""
    devices: DeviceMix = DeviceMix()
    abandoned_cart_share: Share = 0.0
    """Of the app shoppers: those with an online cart they abandoned."""
    visit: VisitSpec


class StaffSpec(_Model):
    count: int = Field(default=0, ge=0)
    badge_uuid: str = "a3c6a1f0-2b1e-4c3d-9f5e-5354414646ff"
    badge_interval_s: float = Field(default=1.0, gt=0)
    phone_share: Share = 1.0
    arrive_before_open_s: float = Field(default=1800.0, ge=0)
    leave_after_close_s: float = Field(default=900.0, ge=0)
    visit: VisitSpec


class PassersbySpec(_Model):
    per_hour: dict[int, float] = {}
    devices: DeviceMix = DeviceMix()
    window_stop_share: Share = 0.0
    window_stop: DwellSpec = DwellSpec(median_s=20.0)


BeaconSpec = Annotated[IBeaconSpec | EddystoneSpec, Field(discriminator="type")]


class Scenario(_Model):
    name: str
    description: str = ""
    store_id: str = Field(default="store-1", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    app_uuid: str = StorelinkSettings.model_fields["app_uuid"].default
    day: date = date(2026, 11, 24)
    open: time = time(9, 0)
    close: time = time(19, 0)
    radio: RadioParams = RadioParams()
    gateway_defaults: GatewayDefaults = GatewayDefaults()
    floor: FloorSpec
    gateways: tuple[GatewaySpec, ...] = Field(min_length=1)
    beacons: tuple[BeaconSpec, ...] = ()
    shoppers: ShoppersSpec
    staff: StaffSpec | None = None
    passersby: PassersbySpec = PassersbySpec()

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        zones = {zone.id for zone in self.floor.zones}
        ids = [gateway.id for gateway in self.gateways]
        if len(set(ids)) != len(ids):
            raise ValueError("gateway ids must be unique")
        for gateway in self.gateways:
            if gateway.zone not in zones:
                raise ValueError(f"gateway {gateway.id} watches unknown zone {gateway.zone!r}")
        visits = [self.shoppers.visit] + ([self.staff.visit] if self.staff else [])
        for visit in visits:
            for zone in [*visit.zones, *([visit.last] if visit.last else [])]:
                if zone not in zones:
                    raise ValueError(f"a visit names unknown zone {zone!r}")
        if self.open >= self.close:
            raise ValueError("the store must open before it closes")
        return self

    def at(self, clock: time) -> float:
        """Unix time of a time of day on the scenario's day (UTC)."""
        return datetime.combine(self.day, clock, tzinfo=UTC).timestamp()

    @property
    def open_ts(self) -> float:
        return self.at(self.open)

    @property
    def close_ts(self) -> float:
        return self.at(self.close)

    def enter_distance(self, gateway: GatewaySpec) -> float:
        return gateway.enter_distance_m or self.gateway_defaults.enter_distance_m

    @property
    def entrance_zones(self) -> frozenset[str]:
        return frozenset(zone.id for zone in self.floor.zones if zone.entrance)

    @property
    def watched_zones(self) -> frozenset[str]:
        return frozenset(gateway.zone for gateway in self.gateways)


def scenario_names() -> list[str]:
    folder = resources.files(SCENARIO_PACKAGE)
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml")
    )


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A shipped scenario by name (``boutique``), or a YAML file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        text = path.read_text()
    else:
        entry = resources.files(SCENARIO_PACKAGE) / f"{name_or_path}.yaml"
        if not entry.is_file():
            known = ", ".join(scenario_names())
            raise ValueError(f"no scenario {name_or_path!r}; shipped: {known}")
        text = entry.read_text()
    return Scenario.model_validate(yaml.safe_load(text))


def with_overrides(scenario: Scenario, assignments: list[str]) -> Scenario:
    """The scenario with ``KEY=VALUE`` settings changed, for tuning runs.

    ``KEY`` is a ``gateway_defaults`` field (``enter_distance_m`` then applies to every gateway,
    replacing their own values) or ``radio.`` and a ``RadioParams`` field.
    """
    gateway_values = scenario.gateway_defaults.model_dump()
    radio_values = scenario.radio.model_dump()
    gateways = scenario.gateways
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        key = key.strip()
        if not sep:
            raise ValueError(f"expected KEY=VALUE, got {assignment!r}")
        if key.startswith("radio."):
            field = key.removeprefix("radio.")
            if field not in RadioParams.model_fields:
                raise ValueError(f"unknown radio parameter {field!r}")
            radio_values[field] = value
        elif key in GatewayDefaults.model_fields:
            gateway_values[key] = value
            if key == "enter_distance_m":
                gateways = tuple(g.model_copy(update={"enter_distance_m": None}) for g in gateways)
        else:
            raise ValueError(f"unknown setting {key!r}")
    return scenario.model_copy(
        update={
            "gateway_defaults": GatewayDefaults.model_validate(gateway_values),
            "radio": RadioParams.model_validate(radio_values),
            "gateways": gateways,
        }
    )
