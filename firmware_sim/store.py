"""A scenario made concrete for one seed: its people, its devices on air and its gateways."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from uuid import UUID

from firmware_sim.addresses import static_random_address
from firmware_sim.airwaves import TICK_S, Airwaves, Emitter, GatewaySite
from firmware_sim.channel import Wall
from firmware_sim.firmware import EddystoneFirmware, Firmware, IBeaconFirmware
from firmware_sim.geometry import Point
from firmware_sim.naming import Naming
from firmware_sim.population import Carried, Person, Population
from firmware_sim.scenario import EddystoneSpec, IBeaconSpec, Scenario
from gateway.config import GatewaySettings, canonical_beacon_id

# Eddystone calibrates power at 0 m; the spec's rule of thumb is 41 dB lost over the first metre.
EDDYSTONE_LOSS_AT_1M_DB = 41
# Before the first and after the last person, room for the gateways to see everyone leave.
MARGIN_S = 60.0
# Scenario settings that, left out, keep the gateway's own default.
OPTIONAL_GATEWAY_SETTINGS = {
    "arbitration",
    "arbitration_margin_db",
    "arbitration_hold_s",
    "arbitration_stale_s",
    "enter_confirm_s",
    "companion_window_s",
    "arrival_heard_max_s",
}
# Of those, the ones a gateway of the scenario may set for itself.
PER_GATEWAY_SETTINGS = {"enter_confirm_s", "companion_window_s", "arrival_heard_max_s"}


def pseudonym_key(seed: int) -> str:
    """The key the simulated gateways pseudonymise addresses with: known, so truth can too."""
    return f"storelink-sim-pseudonym-key/{seed}"


@dataclass(frozen=True)
class FixedDevice:
    key: str
    firmware: Firmware
    at: Point
    height_m: float
    tx_1m_dbm: float


class SimStore:
    """Everything one run of a scenario needs, built from the scenario and the seed.

    ``hours`` limits the run to people arriving in the first hours after opening.
    """

    def __init__(self, scenario: Scenario, seed: int, hours: float | None = None) -> None:
        self.scenario = scenario
        self.seed = seed
        until = scenario.close_ts if hours is None else scenario.open_ts + hours * 3600.0
        self.until = min(until, scenario.close_ts)
        day_start = scenario.open_ts - 86_400.0
        self.people: list[Person] = Population(scenario, seed, day_start, self.until).people()
        self.beacons = [_fixed_device(scenario, index) for index in range(len(scenario.beacons))]
        # Every gateway of the store names devices alike.
        self.naming = Naming(self.gateway_settings()[0])
        first = min([p.trajectory.start for p in self.people], default=scenario.open_ts)
        last = max([p.trajectory.end for p in self.people], default=self.until)
        # Ticks start on a whole second, so that runs with other options line up.
        self.start = math.floor(min(first, scenario.open_ts) - MARGIN_S)
        self.end = math.ceil(last + scenario.gateway_defaults.exit_timeout_s + MARGIN_S)

    def _store_beacon_ids(self) -> list[str]:
        return [
            canonical_beacon_id(
                f"{b.uuid}:{b.major}:{b.minor}"
                if isinstance(b, IBeaconSpec)
                else f"{b.namespace}:{b.instance}"
            )
            for b in self.scenario.beacons
            if b.store
        ]

    def gateway_settings(self) -> list[GatewaySettings]:
        """The settings of each simulated gateway, independent of the environment's."""
        scenario = self.scenario
        defaults = scenario.gateway_defaults
        optional = defaults.model_dump(include=OPTIONAL_GATEWAY_SETTINGS, exclude_none=True)
        return [
            GatewaySettings(
                _env_file=None,
                app_uuid=scenario.app_uuid,
                store_id=scenario.store_id,
                gateway_id=gateway.id,
                zone_id=gateway.zone,
                scanner="sim",
                enter_distance_m=scenario.enter_distance(gateway),
                exit_timeout_s=defaults.exit_timeout_s,
                dwell_interval_s=defaults.dwell_interval_s,
                rssi_at_1m=defaults.rssi_at_1m,
                path_loss_exponent=defaults.path_loss_exponent,
                smoothing_alpha=defaults.smoothing_alpha,
                heartbeat_s=3600.0,
                store_beacons=self._store_beacon_ids(),
                pseudonym_key=pseudonym_key(self.seed),
                **(optional | gateway.model_dump(include=PER_GATEWAY_SETTINGS, exclude_none=True)),
            )
            for gateway in scenario.gateways
        ]

    def airwaves(self, tick_s: float = TICK_S) -> Airwaves:
        scenario = self.scenario
        emitters = [
            _emitter(f"{person.id}/{i}", carried.firmware, person, carried, self.seed)
            for person in self.people
            for i, carried in enumerate(person.devices)
        ]
        emitters += [
            Emitter(
                beacon.key,
                beacon.firmware,
                position=_constant(beacon.at),
                facing=_constant(0.0),
                on=self.start,
                off=math.inf,
                height_m=beacon.height_m,
                body_loss_db=0.0,
                tx_1m_dbm=beacon.tx_1m_dbm,
                seed=self.seed,
            )
            for beacon in self.beacons
        ]
        walls = [
            Wall(wall.start, wall.end, wall.loss_db, wall.kind) for wall in scenario.floor.walls
        ]
        sites = [GatewaySite(g.id, g.at, g.height_m) for g in scenario.gateways]
        return Airwaves(
            gateways=sites,
            emitters=emitters,
            walls=walls,
            params=scenario.radio,
            seed=self.seed,
            start=self.start,
            tick_s=tick_s,
        )


_T = TypeVar("_T")


def _constant(value: _T) -> Callable[[float], _T]:
    return lambda _t: value


def _emitter(key: str, firmware: Firmware, person: Person, carried: Carried, seed: int) -> Emitter:
    trajectory = person.trajectory
    return Emitter(
        key,
        firmware,
        position=trajectory.position,
        facing=trajectory.facing,
        on=trajectory.start,
        off=trajectory.end,
        height_m=carried.height_m,
        body_loss_db=carried.body_loss_db,
        tx_1m_dbm=carried.tx_1m_dbm,
        seed=seed,
    )


def _fixed_device(scenario: Scenario, index: int) -> FixedDevice:
    spec = scenario.beacons[index]
    address = static_random_address(random.Random(f"beacon/{scenario.name}/{index}").randbytes(6))
    if isinstance(spec, IBeaconSpec):
        firmware: Firmware = IBeaconFirmware(
            UUID(spec.uuid), spec.major, spec.minor, address, spec.interval_s, spec.measured_power
        )
        tx = float(spec.measured_power)
    else:
        assert isinstance(spec, EddystoneSpec)
        firmware = EddystoneFirmware(
            namespace=bytes.fromhex(spec.namespace),
            instance=bytes.fromhex(spec.instance),
            address=address,
            interval_s=spec.interval_s,
            powered_on=scenario.open_ts - spec.powered_on_days_ago * 86_400.0,
            tx_power_0m=spec.tx_power_0m,
            url=spec.url,
            tlm_every=spec.tlm_every,
            battery_mv=spec.battery_mv,
            drain_mv_per_day=spec.drain_mv_per_day,
            temperature_c=spec.temperature_c,
        )
        tx = float(spec.tx_power_0m - EDDYSTONE_LOSS_AT_1M_DB)
    return FixedDevice(f"beacon-{index}", firmware, spec.at, spec.height_m, tx)
