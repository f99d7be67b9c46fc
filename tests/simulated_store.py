"""The demo store's entrance gateway scanning simulated app shoppers, over a real broker.

Shared by the end-to-end test and the end-to-end benchmark (bench/e2e.py), which differ only in
how fast the store's clock runs, how many rounds the shoppers come back, and how long it lasts.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from firmware_sim.world import DEMO_STORE_BEACON_ID, demo_world
from gateway.config import GatewaySettings
from gateway.simulated import simulated_gateway
from storelink.clock import ScaledClock


def run_simulated_store(
    url: str,
    app_keys: list[bytes],
    outbox: Path,
    *,
    wall_seconds: float,
    speed: float = 1.0,
    anonymous: int = 2,
    seed: int = 0,
    rounds: int = 1,
    round_s: float = 120.0,
) -> None:
    """Scan store-1's entrance for ``wall_seconds`` of real time, then stop the gateway."""
    clock = ScaledClock(speed=speed)
    settings = GatewaySettings(
        mqtt_url=url,
        mqtt_protocol="5",
        store_id="store-1",
        gateway_id="gw-1",
        zone_id="entrance",
        store_beacons=[DEMO_STORE_BEACON_ID],
        outbox_path=str(outbox),
    )
    world = demo_world(
        app_uuid=settings.app_uuid,
        start=clock.now(),
        app_keys=app_keys,
        anonymous=anonymous,
        seed=seed,
        gateway_id=settings.gateway_id,
        rounds=rounds,
        round_s=round_s,
    )

    async def main() -> None:
        async with simulated_gateway(settings, clock, world):
            await asyncio.sleep(wall_seconds)

    asyncio.run(main())
