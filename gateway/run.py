"""The gateway process: scanner in, MQTT out, housekeeping in between.

Besides presence, the process keeps itself healthy and observable: a watchdog replaces a scanner
that went silent (``gateway.watchdog``), the retained remote config is applied live
(``gateway.remote_config``), heartbeats carry counters, and the store's beacons' health goes out
on the beacons topic (``gateway.fleet``). With arbitration on, the gateway publishes what it hears
on its sightings topic about once a second and listens to its peers' (``gateway.arbitrate``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from bleak import BleakScanner
from bleak.backends.scanner import BaseBleakScanner
from pydantic import ValidationError

from gateway.config import GatewaySettings
from gateway.passive import scanner_kwargs
from gateway.pipeline import GatewayPipeline
from gateway.publish import MqttPublisher
from gateway.remote_config import RemoteConfig, persisted_config_path
from gateway.status import GatewayCounters
from gateway.watchdog import ScannerWatchdog, adapter_recovery
from storelink.clock import Clock
from storelink.wire import (
    CONFIG_QOS,
    SIGHTINGS_QOS,
    GatewayState,
    PeerSightings,
    config_topic,
    store_sightings_subscription,
)

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
    loop = asyncio.get_running_loop()

    def publish_status_now() -> None:
        publisher.publish_status(pipeline.status(GatewayState.ONLINE, clock.now(), sample=False))

    if settings.remote_config:
        remote = RemoteConfig(
            settings,
            pipeline,
            path=persisted_config_path(settings),
            on_change=publish_status_now,
            call_soon=loop.call_soon_threadsafe,
        )
        remote.load_persisted()
        publisher.subscribe(
            config_topic(settings.store_id, settings.gateway_id), CONFIG_QOS, remote.on_message
        )

    if settings.arbitration:

        def on_sightings(payload: bytes) -> None:
            try:
                sightings = PeerSightings.model_validate_json(payload)
            except ValidationError as exc:
                logger.debug("ignored a sightings summary: %d errors", exc.error_count())
                return
            if sightings.gateway_id == settings.gateway_id:
                return  # this gateway's own, back from the broker
            # RuntimeError: the event loop is closing, the gateway is stopping.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(
                    lambda: pipeline.on_peer_sightings(sightings, clock.now())
                )

        publisher.subscribe(
            store_sightings_subscription(settings.store_id), SIGHTINGS_QOS, on_sightings
        )

    bleak_kwargs = scanner_kwargs(settings, backend_kwargs)

    def make_scanner() -> BleakScanner:
        return BleakScanner(
            detection_callback=pipeline.on_advertisement,
            scanning_mode=settings.scanning_mode,
            backend=backend,
            **bleak_kwargs,
        )

    def count_restart() -> None:
        pipeline.counters.scanner_restarts += 1

    watchdog = ScannerWatchdog(
        make_scanner,
        clock=clock,
        progress=lambda: pipeline.counters.adverts_seen,
        # A recording that has played to its end is quiet by design, not a stalled radio.
        silence_s=0.0 if settings.scanner == "replay" else settings.watchdog_s,
        max_backoff_s=settings.watchdog_max_backoff_s,
        # Only the real radio has an adapter to reset.
        recover_adapter=(
            adapter_recovery(settings.adapter)
            if backend is None and settings.adapter_recovery
            else None
        ),
        on_restart=count_restart,
    )
    # What goes out on connect: with the saved config's version already.
    publish_status_now()
    publisher.start()
    try:
        halt = asyncio.Event()
        watching = asyncio.create_task(watchdog.run(halt))
        logger.info("gateway %s/%s starting", settings.store_id, settings.gateway_id)
        next_sightings = clock.now() + settings.sightings_interval_s
        try:
            while not stop.is_set() and not watching.done():
                now = clock.now()
                pipeline.housekeeping(now)
                if now >= next_sightings:
                    next_sightings = now + settings.sightings_interval_s
                    sightings = pipeline.sightings(now)
                    # Even empty: the peers learn that this gateway is there and listening.
                    if sightings is not None:
                        publisher.publish_sightings(sightings)
                if pipeline.fleet.report_due(now):
                    publisher.publish_beacons(
                        pipeline.fleet.report(settings.store_id, settings.gateway_id, now)
                    )
                await _sleep_unless_stopped(clock, HOUSEKEEPING_S, stop, watching)
        finally:
            halt.set()
            await watching  # stops the scanner; raises if it could not start (watchdog off)
        pipeline.close(clock.now())
    finally:
        final = pipeline.status(GatewayState.OFFLINE, clock.now())
        # The broker may be an embedded one on this very event loop: wait for it off the loop.
        await asyncio.to_thread(publisher.stop, final)
    logger.info("gateway stopped: %s", pipeline.counters)
    return pipeline.counters


async def _sleep_unless_stopped(
    clock: Clock, seconds: float, stop: asyncio.Event, watching: asyncio.Task[None]
) -> None:
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({sleeper, stopper, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
        stopper.cancel()
