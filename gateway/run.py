"""The gateway process: scanner in, MQTT out, housekeeping in between."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bleak import BleakScanner
from bleak.backends.scanner import BaseBleakScanner

from gateway.config import GatewaySettings
from gateway.pipeline import GatewayPipeline
from gateway.publish import MqttPublisher
from gateway.status import GatewayCounters, make_status
from storelink.clock import Clock
from storelink.wire import GatewayState

logger = logging.getLogger(__name__)

HOUSEKEEPING_S = 1.0


async def run_gateway(
    settings: GatewaySettings,
    *,
    clock: Clock,
    backend: type[BaseBleakScanner] | None = None,
    backend_kwargs: dict[str, Any] | None = None,
    stop: asyncio.Event,
) -> GatewayCounters:
    """Scan and publish until ``stop`` is set; ``backend`` None is the platform's Bluetooth."""
    publisher = MqttPublisher(settings, clock=clock)
    pipeline = GatewayPipeline(settings, publisher, clock)
    scanner_kwargs = dict(backend_kwargs or {})
    if settings.adapter is not None:
        scanner_kwargs["bluez"] = {"adapter": settings.adapter}
    scanner = BleakScanner(
        detection_callback=pipeline.on_advertisement,
        scanning_mode=settings.scanning_mode,
        backend=backend,
        **scanner_kwargs,
    )
    publisher.start()
    try:
        await scanner.start()
        logger.info("gateway %s/%s scanning", settings.store_id, settings.gateway_id)
        try:
            while not stop.is_set():
                pipeline.housekeeping(clock.now())
                await _sleep_unless_stopped(clock, HOUSEKEEPING_S, stop)
        finally:
            await scanner.stop()
        pipeline.close(clock.now())
    finally:
        final = make_status(settings, GatewayState.OFFLINE, clock.now(), pipeline.counters)
        # The broker may be an embedded one on this very event loop: wait for it off the loop.
        await asyncio.to_thread(publisher.stop, final)
    logger.info("gateway stopped: %s", pipeline.counters)
    return pipeline.counters


async def _sleep_unless_stopped(clock: Clock, seconds: float, stop: asyncio.Event) -> None:
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
        stopper.cancel()
