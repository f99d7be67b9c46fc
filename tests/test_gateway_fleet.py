"""The health of the store's own beacons: last seen, RSSI, Eddystone-TLM telemetry, missing."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

from firmware_sim.eddystone import tlm_frame, uid_frame
from firmware_sim.frames import ibeacon_frame
from firmware_sim.world import DEMO_STORE_BEACON, DEMO_STORE_BEACON_ID, demo_app_keys, demo_world
from gateway.config import GatewaySettings
from gateway.simulated import simulated_gateway
from storelink.clock import ScaledClock
from storelink.wire import BeaconFleetReport, beacons_topic, contains_mac_address
from tests.services import Mosquitto
from tests.test_gateway_publish import Collector, wait_until
from tests.test_gateway_remote_config import T0, config, make_pipeline, see

STORE_BEACON_ADDRESS = "C3:00:00:00:00:01"
STAFF = UUID("a1b2c3d4-0000-4000-8000-000000000001")
NAMESPACE = bytes.fromhex("00112233445566778899")
INSTANCE = bytes.fromhex("aabbccddeeff")
ABSENT = "e2c56db5-dffb-48d2-b060-d0f5a71096e0:9:9"


def test_an_ibeacon_with_tlm_reports_battery_and_temperature_and_no_presence() -> None:
    pipeline, sink, clock = make_pipeline(beacon_missing_after_s=60, beacon_report_s=30)
    uuid, major, minor = DEMO_STORE_BEACON
    see(pipeline, STORE_BEACON_ADDRESS, ibeacon_frame(uuid, major, minor, -59), -70)
    clock.t += 1
    # Telemetry comes in its own advertisement, without the beacon's id: the address ties it.
    see(pipeline, STORE_BEACON_ADDRESS, tlm_frame(2950, 21.5, 123_456, 86_400.0), -72)
    assert sink.events == [], "the store's own beacon is not footfall, nor is its telemetry"
    report = pipeline.fleet.report("store-1", "gw-1", clock.t)
    [health] = report.beacons
    assert health.beacon_id == DEMO_STORE_BEACON_ID
    assert not health.missing
    assert health.last_seen == datetime.fromtimestamp(T0 + 1, UTC)
    assert health.rssi is not None and -72 < health.rssi < -70
    assert (health.battery_mv, health.temperature_c) == (2950, 21.5)
    assert (health.adv_count, health.beacon_uptime_s) == (123_456, 86_400.0)
    assert health.telemetry_at == datetime.fromtimestamp(T0 + 1, UTC)
    assert not contains_mac_address(report.model_dump_json())


def test_telemetry_from_an_unknown_address_is_nobodys() -> None:
    pipeline, sink, clock = make_pipeline()
    see(pipeline, "C3:00:00:00:00:99", tlm_frame(3000, 20.0, 1, 1.0), -60)
    [health] = pipeline.fleet.report("store-1", "gw-1", clock.t).beacons
    assert (health.last_seen, health.battery_mv) == (None, None)
    assert sink.events == []


def test_an_eddystone_uid_store_beacon_from_the_remote_config() -> None:
    pipeline, sink, clock = make_pipeline()
    beacon_id = f"{NAMESPACE.hex()}:{INSTANCE.hex()}"
    pipeline.apply_config(config(store_beacons=[beacon_id.upper()]))
    see(pipeline, STORE_BEACON_ADDRESS, uid_frame(NAMESPACE, INSTANCE, -20), -65)
    see(pipeline, STORE_BEACON_ADDRESS, tlm_frame(0, -128.0, 5, 2.5), -65)
    [health] = pipeline.fleet.report("store-1", "gw-1", clock.t).beacons
    assert health.beacon_id == beacon_id
    # A USB-powered beacon without a sensor: no battery reading, no temperature.
    assert (health.battery_mv, health.temperature_c, health.adv_count) == (None, None, 5)
    assert sink.events == []


def test_a_beacon_is_missing_after_the_threshold_and_reported_at_once() -> None:
    pipeline, _, clock = make_pipeline(beacon_missing_after_s=60, beacon_report_s=30)
    uuid, major, minor = DEMO_STORE_BEACON
    fleet = pipeline.fleet
    assert fleet.report_due(clock.t), "the first report goes out at start"
    fleet.report("store-1", "gw-1", clock.t)
    see(pipeline, STORE_BEACON_ADDRESS, ibeacon_frame(uuid, major, minor, -59), -70)
    clock.t += 20
    assert not fleet.report_due(clock.t)
    clock.t += 39
    assert fleet.report_due(clock.t), "every 30 s"
    assert not any(b.missing for b in fleet.report("store-1", "gw-1", clock.t).beacons)
    clock.t += 1
    assert fleet.missing(clock.t) == {DEMO_STORE_BEACON_ID}
    assert fleet.report_due(clock.t)
    [health] = fleet.report("store-1", "gw-1", clock.t).beacons
    assert health.missing
    assert not fleet.report_due(clock.t + 1)
    # It comes back: reported at once, not at the next period.
    clock.t += 5
    see(pipeline, STORE_BEACON_ADDRESS, ibeacon_frame(uuid, major, minor, -59), -70)
    assert fleet.report_due(clock.t)
    [health] = fleet.report("store-1", "gw-1", clock.t).beacons
    assert not health.missing


def test_a_beacon_never_heard_is_missing_counted_from_when_it_was_configured() -> None:
    pipeline, _, clock = make_pipeline(beacon_missing_after_s=60)
    clock.t += 50
    pipeline.apply_config(config(store_beacons=[DEMO_STORE_BEACON_ID, ABSENT]))
    clock.t += 20
    # The demo beacon has been watched for 70 s, the new one for 20.
    assert pipeline.fleet.missing(clock.t) == {DEMO_STORE_BEACON_ID}
    clock.t += 40
    assert pipeline.fleet.missing(clock.t) == {DEMO_STORE_BEACON_ID, ABSENT}


def test_staff_badges_are_not_in_the_report() -> None:
    pipeline, sink, clock = make_pipeline(staff_beacons=[f"{STAFF}:7:1"])
    see(pipeline, "C1:00:00:00:00:07", ibeacon_frame(STAFF, 7, 1, -59), -60)
    see(pipeline, "C1:00:00:00:00:07", tlm_frame(2900, 30.0, 1, 1.0), -60)
    report = pipeline.fleet.report("store-1", "gw-1", clock.t)
    assert [b.beacon_id for b in report.beacons] == [DEMO_STORE_BEACON_ID]
    assert sink.events == []


def test_beacon_reports_over_mosquitto(mosquitto: Mosquitto, tmp_path: Path) -> None:
    settings = GatewaySettings(
        mqtt_url=mosquitto.url,
        outbox_path=tmp_path / "outbox.db",
        store_beacons=[DEMO_STORE_BEACON_ID, ABSENT],
        beacon_missing_after_s=10,
        beacon_report_s=5,
    )
    topic = beacons_topic("store-1", "gw-1")
    live = Collector(mosquitto.host, mosquitto.port, topic)
    live.wait_subscribed()
    start = time.time()
    clock = ScaledClock(start=start, speed=20.0)
    world = demo_world(settings.app_uuid, start, demo_app_keys(1), anonymous=0, seed=0)

    def reports() -> list[BeaconFleetReport]:
        return [BeaconFleetReport.model_validate_json(m.payload) for m in live.received()]

    def absent_missing() -> bool:
        return any(b.beacon_id == ABSENT and b.missing for r in reports() for b in r.beacons)

    async def main() -> None:
        async with simulated_gateway(settings, clock, world):
            deadline = time.monotonic() + 10
            while not absent_missing() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)

    asyncio.run(main())
    live.close()
    assert absent_missing(), reports()
    last = reports()[-1]
    by_id = {b.beacon_id: b for b in last.beacons}
    assert by_id[DEMO_STORE_BEACON_ID].last_seen is not None
    assert not by_id[DEMO_STORE_BEACON_ID].missing
    assert by_id[DEMO_STORE_BEACON_ID].rssi is not None
    assert by_id[ABSENT].last_seen is None
    # A client that subscribes later gets the latest report, retained.
    late = Collector(mosquitto.host, mosquitto.port, topic)
    try:
        assert wait_until(lambda: bool(late.received()))
        message = late.received()[0]
        assert message.retain
        assert BeaconFleetReport.model_validate_json(message.payload).missing_after_s == 10
    finally:
        late.close()
