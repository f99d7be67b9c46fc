from __future__ import annotations

import pytest

from firmware_sim.scanner import SimScanner
from firmware_sim.world import StoreWorld, demo_world
from gateway.config import GatewaySettings
from gateway.sources import scanner_source
from storelink.clock import ScaledClock


def test_bleak_is_the_platform_backend() -> None:
    assert scanner_source(GatewaySettings(scanner="bleak"), ScaledClock()) == (None, {})


def test_sim_builds_the_demo_store_for_this_gateway() -> None:
    clock = ScaledClock(start=1_764_000_000.0)
    settings = GatewaySettings(scanner="sim", gateway_id="door-2")
    backend, kwargs = scanner_source(settings, clock)
    assert backend is SimScanner
    assert kwargs["gateway_id"] == "door-2" and kwargs["clock"] is clock
    world = kwargs["world"]
    assert isinstance(world, StoreWorld)
    assert world.adverts_between("door-2", clock.now(), clock.now() + 20)


def test_a_given_world_replaces_the_demo() -> None:
    world = demo_world("5f2dd896-b886-4549-ae01-e41acd7a354a", 0.0, [], gateway_id="gw-1")
    _, kwargs = scanner_source(GatewaySettings(scanner="sim"), ScaledClock(), world)
    assert kwargs["world"] is world
    with pytest.raises(ValueError, match="sim"):
        scanner_source(GatewaySettings(scanner="bleak"), ScaledClock(), world)
