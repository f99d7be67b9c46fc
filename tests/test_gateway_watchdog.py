"""The scanner watchdog, against bleak scanner backends that stall like BlueZ does.

The stand-in for a radio is ``firmware_sim``'s ``SimScanner``: a subclass keeps running and
answering but stops delivering advertisements, as a stalled BlueZ does after hours of scanning.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from bleak import BleakScanner

from firmware_sim.scanner import SimScanner
from firmware_sim.world import DEMO_STORE_BEACON_ID, SimAdvert, demo_app_keys, demo_world
from gateway.config import GatewaySettings
from gateway.pipeline import GatewayPipeline
from gateway.run import run_gateway
from gateway.watchdog import ScannerWatchdog, failed_start_wait_s, silent_wait_s
from storelink.clock import ScaledClock
from storelink.wire import GatewayState
from tests.services import Mosquitto
from tests.test_gateway_publish import Collector, wait_until
from tests.test_gateway_remote_config import ListSink

SPEED = 20.0


@dataclass
class Radio:
    """Shared by every scanner the watchdog makes: when each started and what each delivered."""

    silent_after: float = float("inf")
    """Clock time from which the first scanner stops delivering (but keeps running)."""
    dead: bool = False
    """No scanner ever delivers anything."""
    failing_starts: int = 0
    """The first this many starts raise, like BlueZ with the adapter gone."""
    starts: list[float] = field(default_factory=list)
    stops: int = 0
    delivered: list[int] = field(default_factory=list)


class StallingScanner(SimScanner):
    def __init__(self, *args: Any, radio: Radio, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._radio = radio
        self._generation = -1

    async def start(self) -> None:
        radio = self._radio
        radio.starts.append(self._clock.now())
        self._generation = len(radio.starts) - 1
        radio.delivered.append(0)
        if self._generation < radio.failing_starts:
            raise RuntimeError("org.bluez.Error.NotReady")
        await super().start()

    async def stop(self) -> None:
        self._radio.stops += 1
        await super().stop()

    def _deliver(self, advert: SimAdvert) -> None:
        radio = self._radio
        if radio.dead or (self._generation == 0 and self._clock.now() >= radio.silent_after):
            return  # still "scanning", nothing comes through
        radio.delivered[self._generation] += 1
        super()._deliver(advert)


def world_and_clock() -> tuple[Any, ScaledClock]:
    start = time.time()
    clock = ScaledClock(start=start, speed=SPEED)
    world = demo_world(
        "5f2dd896-b886-4549-ae01-e41acd7a354a", start, demo_app_keys(2), anonymous=1, seed=0
    )
    return world, clock


def watchdog_for(
    radio: Radio,
    *,
    silence_s: float,
    max_backoff_s: float,
    recover: list[float] | None = None,
) -> tuple[ScannerWatchdog, GatewayPipeline, ScaledClock]:
    world, clock = world_and_clock()
    pipeline = GatewayPipeline(GatewaySettings(outbox_path=":memory:"), ListSink(), clock)

    def make() -> BleakScanner:
        return BleakScanner(
            detection_callback=pipeline.on_advertisement,
            backend=StallingScanner,
            world=world,
            gateway_id="gw-1",
            clock=clock,
            radio=radio,
        )

    async def recover_adapter() -> bool:
        assert recover is not None
        recover.append(clock.now())
        return True

    watchdog = ScannerWatchdog(
        make,
        clock=clock,
        progress=lambda: pipeline.counters.adverts_seen,
        silence_s=silence_s,
        max_backoff_s=max_backoff_s,
        recover_adapter=recover_adapter if recover is not None else None,
    )
    return watchdog, pipeline, clock


async def run_until(
    watchdog: ScannerWatchdog, condition: Any, timeout_s: float = 10.0
) -> asyncio.Event:
    stop = asyncio.Event()
    task = asyncio.create_task(watchdog.run(stop))
    deadline = time.monotonic() + timeout_s
    try:
        while not condition() and time.monotonic() < deadline:
            assert not task.done(), task
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    return stop


def test_the_waits_double_up_to_the_cap() -> None:
    assert [silent_wait_s(k, 60, 300) for k in range(5)] == [60, 120, 240, 300, 300]
    # A cap below the silence threshold never makes a restart come sooner than the threshold.
    assert [silent_wait_s(k, 60, 10) for k in range(3)] == [60, 60, 60]
    assert [failed_start_wait_s(k, 20) for k in range(1, 7)] == [1, 2, 4, 8, 16, 20]


def test_a_stalled_scanner_is_replaced_and_adverts_flow_again() -> None:
    radio = Radio(silent_after=time.time() + 3.0)  # 3 s of store time in
    watchdog, pipeline, _ = watchdog_for(radio, silence_s=4, max_backoff_s=30)

    def recovered() -> bool:
        return len(radio.delivered) >= 2 and radio.delivered[1] > 20

    asyncio.run(run_until(watchdog, recovered))
    assert recovered(), radio
    assert radio.delivered[0] > 0, "the first scanner worked before it stalled"
    assert watchdog.restarts == 1 == len(radio.starts) - 1
    # The silence lasted about the threshold before the restart: 3 s working, 4 s silent.
    assert 6.0 <= radio.starts[1] - radio.starts[0] <= 9.0
    assert radio.stops == 2, "the stalled scanner was stopped, then the new one at the end"
    assert watchdog.fruitless == 0, "receiving again resets the backoff"
    assert pipeline.counters.adverts_seen == sum(radio.delivered)


def test_a_silent_radio_is_restarted_less_and_less_often_and_the_adapter_reset() -> None:
    radio = Radio(dead=True)
    recoveries: list[float] = []
    watchdog, _, _ = watchdog_for(radio, silence_s=2, max_backoff_s=8, recover=recoveries)
    asyncio.run(run_until(watchdog, lambda: len(radio.starts) >= 5, timeout_s=15))
    assert len(radio.starts) >= 5
    gaps = [b - a for a, b in zip(radio.starts, radio.starts[1:], strict=False)][:4]
    for gap, expected in zip(gaps, [2, 4, 8, 8], strict=True):
        assert expected - 0.1 <= gap <= expected + 2.5, gaps
    # A plain restart first; the adapter is reset before each later attempt.
    assert len(recoveries) == len(radio.starts) - 2


def test_a_scanner_that_fails_to_start_is_retried_with_backoff() -> None:
    radio = Radio(failing_starts=3)
    watchdog, pipeline, _ = watchdog_for(radio, silence_s=30, max_backoff_s=60)
    asyncio.run(run_until(watchdog, lambda: pipeline.counters.adverts_seen > 10, timeout_s=15))
    assert pipeline.counters.adverts_seen > 10
    assert watchdog.failed_starts == 3
    gaps = [b - a for a, b in zip(radio.starts, radio.starts[1:], strict=False)]
    for gap, expected in zip(gaps, [1, 2, 4], strict=True):
        assert expected - 0.1 <= gap <= expected + 2.5, gaps


def test_with_the_watchdog_off_a_failed_start_is_raised() -> None:
    radio = Radio(failing_starts=1)
    watchdog, _, _ = watchdog_for(radio, silence_s=0, max_backoff_s=60)
    with pytest.raises(RuntimeError, match="NotReady"):
        asyncio.run(watchdog.run(asyncio.Event()))


def test_the_gateway_restarts_a_stalled_scanner_and_says_so(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    world, clock = world_and_clock()
    radio = Radio(silent_after=clock.now() + 5.0)
    settings = GatewaySettings(
        mqtt_url=mosquitto.url,
        outbox_path=tmp_path / "outbox.db",
        store_beacons=[DEMO_STORE_BEACON_ID],
        watchdog_s=5,
        heartbeat_s=2,
    )
    statuses = Collector(mosquitto.host, mosquitto.port, "storelink/v1/store-1/gw-1/status")
    statuses.wait_subscribed()

    async def main() -> Any:
        stop = asyncio.Event()
        task = asyncio.create_task(
            run_gateway(
                settings,
                clock=clock,
                backend=StallingScanner,
                backend_kwargs={
                    "world": world,
                    "gateway_id": "gw-1",
                    "clock": clock,
                    "radio": radio,
                },
                stop=stop,
            )
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
            len(radio.delivered) >= 2 and radio.delivered[1] > 20
        ):
            await asyncio.sleep(0.02)
        stop.set()
        return await task

    counters = asyncio.run(main())
    assert len(radio.starts) == 2 and radio.delivered[1] > 20, radio
    assert counters.scanner_restarts == 1
    assert wait_until(lambda: any(s.state is GatewayState.OFFLINE for s, _ in statuses.statuses()))
    received = [s for s, _ in statuses.statuses()]
    statuses.close()
    final = received[-1]
    assert final.scanner_restarts == 1
    assert final.uptime_s is not None and final.uptime_s > 5
    beats = [s for s in received if s.state is GatewayState.ONLINE and s.adverts_per_s is not None]
    assert any(s.adverts_per_s for s in beats), "heartbeats carry the advert rate"
    # During the stall a heartbeat said nothing was coming in.
    assert any(s.adverts_per_s == 0 for s in beats[1:]), [s.adverts_per_s for s in beats]
