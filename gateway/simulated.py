"""The real gateway scanning a simulated store in a task, for as long as a block runs.

The demo, the end-to-end benchmark and the tests over a real broker drive it so: the block
decides how long the store stays open (a sleep, a condition, a signal), leaving it stops the
gateway and waits for its last publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from firmware_sim.scanner import AdvertSource, SimScanner
from gateway.config import GatewaySettings
from gateway.run import run_gateway
from gateway.status import GatewayCounters
from storelink.clock import Clock


@contextlib.asynccontextmanager
async def simulated_gateway(
    settings: GatewaySettings, clock: Clock, world: AdvertSource
) -> AsyncIterator[asyncio.Task[GatewayCounters]]:
    """``run_gateway`` over ``world``'s radio on ``clock``; the task's result is its counters."""
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_gateway(
            settings,
            clock=clock,
            backend=SimScanner,
            backend_kwargs={"world": world, "gateway_id": settings.gateway_id, "clock": clock},
            stop=stop,
        )
    )
    try:
        yield task
    finally:
        stop.set()
        await task
