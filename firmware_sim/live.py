"""One gateway of a scenario as a live process: ``storelink gateway run --scanner sim --scenario``.

The gateway is the real one (``gateway.run.run_gateway``: MQTT, outbox, remote config, watchdog);
only its radio is the scenario's, heard through ``SimScanner`` on a clock that starts when the
scenario's day does and runs ``speed`` times as fast as the wall clock. Its presence settings
(store, zone, distances, store beacons, pseudonym key) are the scenario's gateway's; the rest
(broker, TLS, outbox) is the local configuration's.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_sim.airwaves import Airwaves
from firmware_sim.scenario import load_scenario
from firmware_sim.store import OPTIONAL_GATEWAY_SETTINGS, SimStore
from gateway.config import GatewaySettings
from storelink.clock import ScaledClock

# What the scenario decides for its gateways (``SimStore.gateway_settings``).
SCENARIO_SETTINGS = frozenset(
    {
        "app_uuid",
        "store_id",
        "gateway_id",
        "zone_id",
        "scanner",
        "enter_distance_m",
        "exit_timeout_s",
        "dwell_interval_s",
        "rssi_at_1m",
        "path_loss_exponent",
        "smoothing_alpha",
        "store_beacons",
        "pseudonym_key",
    }
    | OPTIONAL_GATEWAY_SETTINGS
)


@dataclass(frozen=True)
class LiveGateway:
    settings: GatewaySettings
    clock: ScaledClock
    world: Airwaves


def live_gateway(
    base: GatewaySettings, scenario: str, *, seed: int = 0, speed: float = 1.0
) -> LiveGateway:
    """The scenario's gateway named ``base.gateway_id`` (else its first gateway), configured by
    ``base`` for everything but presence. Raises ValueError for an unknown scenario."""
    store = SimStore(load_scenario(scenario), seed)
    gateways = {settings.gateway_id: settings for settings in store.gateway_settings()}
    own = gateways.get(base.gateway_id) or next(iter(gateways.values()))
    settings = base.model_copy(update={name: getattr(own, name) for name in SCENARIO_SETTINGS})
    return LiveGateway(settings, ScaledClock(start=store.start, speed=speed), store.airwaves())
