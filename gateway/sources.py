"""Where advertisements come from: the Bluetooth adapter or a simulated store."""

from __future__ import annotations

from typing import Any

from bleak.backends.scanner import BaseBleakScanner

from firmware_sim.scanner import AdvertSource, SimScanner
from firmware_sim.world import demo_app_keys, demo_world
from gateway.config import GatewaySettings
from storelink.clock import Clock

DEMO_APP_SHOPPERS = 3
DEMO_ANONYMOUS_SHOPPERS = 2


def scanner_source(
    settings: GatewaySettings, clock: Clock, world: AdvertSource | None = None
) -> tuple[type[BaseBleakScanner] | None, dict[str, Any]]:
    """The ``backend`` and ``backend_kwargs`` for ``run_gateway``.

    Under the ``sim`` scanner, ``world`` defaults to the demo store with the shoppers of
    ``firmware_sim.world.demo_app_keys``, starting now. The ``replay`` scanner plays
    ``settings.replay_file`` back (``gateway.sources_replay``).
    """
    if settings.scanner != "sim" and world is not None:
        raise ValueError("a simulated world needs scanner='sim'")
    if settings.scanner == "bleak":
        return None, {}
    if settings.scanner == "replay":
        from gateway.sources_replay import ReplayScanner

        if settings.replay_file is None:
            raise ValueError("scanner='replay' needs replay_file, a file `gateway record` wrote")
        return ReplayScanner, {"path": settings.replay_file, "clock": clock}
    if world is None:
        world = demo_world(
            settings.app_uuid,
            clock.now(),
            demo_app_keys(DEMO_APP_SHOPPERS),
            anonymous=DEMO_ANONYMOUS_SHOPPERS,
            gateway_id=settings.gateway_id,
        )
    return SimScanner, {"world": world, "gateway_id": settings.gateway_id, "clock": clock}
