from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from firmware_sim.scanner import SimScanner
from firmware_sim.world import SimAdvert, StoreWorld, demo_app_keys, demo_world
from gateway.decode import decode_ibeacon
from storelink.clock import ScaledClock
from storelink.tokens import TOKEN_WINDOW_S

APP_UUID = "5f2dd896-b886-4549-ae01-e41acd7a354a"
START = 1_960_000 * TOKEN_WINDOW_S
Seen = list[tuple[BLEDevice, AdvertisementData]]


def make_world(seed: int = 0) -> StoreWorld:
    return demo_world(APP_UUID, START, demo_app_keys(3), anonymous=2, seed=seed)


async def scan(world: StoreWorld, real_s: float, **scanner_kwargs: Any) -> Seen:
    seen: Seen = []
    scanner = BleakScanner(
        lambda device, adv: seen.append((device, adv)),
        backend=SimScanner,
        world=world,
        gateway_id="gw-1",
        clock=ScaledClock(start=START, speed=40),
        **scanner_kwargs,
    )
    async with scanner:
        await asyncio.sleep(real_s)
    return seen


def sim_adverts(seen: Seen) -> list[SimAdvert]:
    return [adv.platform_data[0] for _, adv in seen]


def test_bleak_delivers_devices_and_advertisement_data() -> None:
    seen = asyncio.run(scan(make_world(), 0.5))
    assert len(seen) > 100
    app_beacons = 0
    for device, adv in seen:
        assert isinstance(device, BLEDevice) and isinstance(adv, AdvertisementData)
        advert = adv.platform_data[0]
        assert device.address == advert.address
        assert adv.rssi == advert.rssi
        assert adv.manufacturer_data.keys() == {0x004C}
        beacon = decode_ibeacon(adv.manufacturer_data)
        app_beacons += beacon is not None and beacon.uuid == APP_UUID
    assert app_beacons > 0


def test_delivers_exactly_what_the_world_sent_in_order() -> None:
    world = make_world()
    delivered = sim_adverts(asyncio.run(scan(world, 0.4)))
    first, last = delivered[0].t, delivered[-1].t
    assert delivered == world.adverts_between("gw-1", first, math.nextafter(last, math.inf))


def test_same_seed_same_delivery() -> None:
    run_a = sim_adverts(asyncio.run(scan(make_world(seed=3), 0.3)))
    run_b = sim_adverts(asyncio.run(scan(make_world(seed=3), 0.3)))
    run_c = sim_adverts(asyncio.run(scan(make_world(seed=4), 0.3)))
    # The two runs start and stop a few milliseconds apart: compare where both listened.
    lo, hi = max(run_a[0].t, run_b[0].t), min(run_a[-1].t, run_b[-1].t)
    overlap_a = [a for a in run_a if lo <= a.t <= hi]
    assert len(overlap_a) > 50
    assert overlap_a == [a for a in run_b if lo <= a.t <= hi]
    assert overlap_a != [a for a in run_c if lo <= a.t <= hi]


def test_service_uuid_filter_applies() -> None:
    # No simulated device advertises a service, so a filtered scan hears nothing.
    seen = asyncio.run(
        scan(make_world(), 0.2, service_uuids=["0000feaa-0000-1000-8000-00805f9b34fb"])
    )
    assert seen == []


def test_stop_ends_delivery_and_seen_devices_are_kept() -> None:
    async def run() -> tuple[int, int, int]:
        seen: Seen = []
        scanner = BleakScanner(
            lambda device, adv: seen.append((device, adv)),
            backend=SimScanner,
            world=make_world(),
            gateway_id="gw-1",
            clock=ScaledClock(start=START, speed=40),
        )
        await scanner.start()
        await asyncio.sleep(0.3)
        await scanner.stop()
        count = len(seen)
        await asyncio.sleep(0.2)
        return count, len(seen), len(scanner.discovered_devices_and_advertisement_data)

    at_stop, later, devices = asyncio.run(run())
    assert at_stop > 0
    assert later == at_stop
    assert devices >= 2


def test_a_failing_callback_does_not_stop_the_scan(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def callback(device: BLEDevice, adv: AdvertisementData) -> None:
        calls.append(adv.rssi)
        if len(calls) == 1:
            raise RuntimeError("boom")

    async def run() -> None:
        async with BleakScanner(
            callback,
            backend=SimScanner,
            world=make_world(),
            gateway_id="gw-1",
            clock=ScaledClock(start=START, speed=40),
        ):
            await asyncio.sleep(0.3)

    asyncio.run(run())
    assert len(calls) > 10
    assert "detection callback failed" in caplog.text


def test_unknown_gateway_is_refused() -> None:
    with pytest.raises(ValueError, match="no gateway"):
        BleakScanner(backend=SimScanner, world=make_world(), gateway_id="gw-9", clock=ScaledClock())
