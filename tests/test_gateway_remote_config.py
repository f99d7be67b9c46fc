"""Remote configuration: applied live to the pipeline, rejected with a reason, kept on disk."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import paho.mqtt.client as mqtt
import pytest
from bleak.backends.device import BLEDevice
from paho.mqtt.enums import CallbackAPIVersion

from firmware_sim.addresses import resolvable_private_address
from firmware_sim.frames import heart_rate_strap_frame, ibeacon_frame, nearby_info_frame
from firmware_sim.world import DEMO_STORE_BEACON_ID, demo_app_keys, demo_world
from gateway.config import GatewaySettings
from gateway.pipeline import GatewayPipeline
from gateway.remote_config import (
    ConfigRejectedError,
    RemoteConfig,
    parse_config,
    persisted_config_path,
    write_config,
)
from gateway.simulated import simulated_gateway
from storelink.clock import ScaledClock, SteppedClock
from storelink.wire import (
    GatewayConfig,
    GatewayState,
    PresenceKind,
    SubjectType,
    config_topic,
    status_topic,
)
from tests.helpers import ListSink, bluez_advert
from tests.services import Mosquitto
from tests.test_gateway_publish import Collector, wait_until

T0 = 1_764_000_000.0
APP_UUID = "5f2dd896-b886-4549-ae01-e41acd7a354a"
OTHER_APP_UUID = "0d6c9a2e-1f5b-4c3a-9e8d-7b6a5c4d3e2f"
PHONE = "5A:11:22:33:44:55"
FOB = UUID("e2c56db5-dffb-48d2-b060-d0f5a71096e0")
STAFF = UUID("a1b2c3d4-0000-4000-8000-000000000001")
IRK = bytes(range(16))


def make_pipeline(**overrides: Any) -> tuple[GatewayPipeline, ListSink, SteppedClock]:
    # No smoothing: each sighting's distance is what its RSSI says.
    options: dict[str, Any] = {
        "app_uuid": APP_UUID,
        "store_beacons": [DEMO_STORE_BEACON_ID],
        "smoothing_alpha": 1.0,
        "outbox_path": ":memory:",
    }
    settings = GatewaySettings(**(options | overrides))
    sink, clock = ListSink(), SteppedClock(T0)
    return GatewayPipeline(settings, sink, clock), sink, clock


def config(**fields: Any) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {"version": 1, "store_id": "store-1", "gateway_id": "gw-1"} | fields
    )


def see(pipeline: GatewayPipeline, address: str, raw: bytes, rssi: int) -> None:
    pipeline.on_advertisement(BLEDevice(address, None, None), bluez_advert(raw, rssi))


def zone_kinds(sink: ListSink) -> list[tuple[str, PresenceKind]]:
    return [(event.zone_id, event.kind) for event in sink.events]


# --- applying a config to the pipeline -----------------------------------------------------------


def test_zones_of_a_config_replace_the_local_zone_and_a_removed_zone_is_left() -> None:
    pipeline, sink, clock = make_pipeline()
    see(pipeline, PHONE, nearby_info_frame(b"abc"), -60)  # ~1.1 m: in the local zone
    assert zone_kinds(sink) == [("entrance", PresenceKind.ENTER)]
    pipeline.apply_config(
        config(
            zones=[
                {"zone_id": "door", "enter_distance_m": 3.0},
                {"zone_id": "till", "enter_distance_m": 1.0},
            ]
        )
    )
    # The local zone is gone: whoever was in it has left.
    assert zone_kinds(sink)[1:] == [("entrance", PresenceKind.EXIT)]
    clock.t += 1
    see(pipeline, PHONE, nearby_info_frame(b"abc"), -62)  # ~1.4 m: the door, not the till
    assert zone_kinds(sink)[2:] == [("door", PresenceKind.ENTER)]
    clock.t += 1
    see(pipeline, PHONE, nearby_info_frame(b"abc"), -57)  # ~0.8 m: the till too
    assert zone_kinds(sink)[3:] == [("till", PresenceKind.ENTER)]
    assert pipeline.heartbeat.config_version == 1


def test_exit_distance_keeps_a_subject_at_the_edge_present() -> None:
    pipeline, sink, clock = make_pipeline(exit_timeout_s=10)
    pipeline.apply_config(
        config(zones=[{"zone_id": "door", "enter_distance_m": 1.0, "exit_distance_m": 2.0}])
    )
    see(pipeline, PHONE, nearby_info_frame(b"abc"), -58)  # 0.9 m: enters
    for _ in range(30):  # 1.4 m for 30 s: beyond the enter distance, within the exit distance
        clock.t += 1
        see(pipeline, PHONE, nearby_info_frame(b"abc"), -62)
        pipeline.housekeeping(clock.t)
    assert [kind for _, kind in zone_kinds(sink)] == [PresenceKind.ENTER]
    for _ in range(12):  # 2.8 m: gone
        clock.t += 1
        see(pipeline, PHONE, nearby_info_frame(b"abc"), -68)
        pipeline.housekeeping(clock.t)
    assert [kind for _, kind in zone_kinds(sink)] == [PresenceKind.ENTER, PresenceKind.EXIT]


def test_staff_beacons_and_configured_store_beacons_make_no_presence() -> None:
    pipeline, sink, clock = make_pipeline()
    staff = ibeacon_frame(STAFF, 7, 1, -59)
    fob = ibeacon_frame(FOB, 1, 2, -59)
    see(pipeline, "C1:00:00:00:00:07", staff, -60)
    assert [e.subject.type for e in sink.events] == [SubjectType.BEACON]
    pipeline.close(clock.t)
    sink.events.clear()
    pipeline.apply_config(
        config(staff_beacons=[f"{STAFF}:7:1"], store_beacons=[f"{FOB}:1:2".upper()])
    )
    clock.t += 1
    see(pipeline, "C1:00:00:00:00:07", staff, -60)
    see(pipeline, "C1:00:00:00:00:08", fob, -60)
    assert sink.events == []
    assert pipeline.fleet.store_beacons == {f"{FOB}:1:2"}
    assert pipeline.fleet.staff_beacons == {f"{STAFF}:7:1"}


def test_staff_beacons_from_the_local_settings_make_no_presence() -> None:
    pipeline, sink, _ = make_pipeline(staff_beacons=[f"{STAFF}:7:1"])
    see(pipeline, "C1:00:00:00:00:07", ibeacon_frame(STAFF, 7, 1, -59), -60)
    assert sink.events == []


def test_calibration_by_beacon_and_by_device_class_moves_the_distance() -> None:
    pipeline, sink, clock = make_pipeline()
    pipeline.apply_config(
        config(
            calibration={
                "by_beacon": {f"{FOB}:1:2": -65},
                "by_device_class": {"anonymous": -50},
            }
        )
    )
    see(pipeline, "C1:00:00:00:00:08", ibeacon_frame(FOB, 1, 2, -59), -65)
    [fob] = sink.events
    assert fob.distance_m == 1.0  # its own calibration, not the -59 it advertises
    see(pipeline, PHONE, nearby_info_frame(b"abc"), -60)  # 3.2 m with -50 at 1 m: outside
    assert len(sink.events) == 1
    clock.t += 1
    pipeline.apply_config(config(version=2))
    see(pipeline, PHONE, nearby_info_frame(b"abc"), -60)  # back to rssi_at_1m -59: 1.1 m
    assert [e.subject.type for e in sink.events][1:] == [SubjectType.ANONYMOUS]


def test_app_uuid_and_irks_from_the_config() -> None:
    pipeline, sink, _ = make_pipeline()
    wearable = resolvable_private_address(IRK, b"\x12\x34\x56")
    pipeline.apply_config(config(app_uuid=OTHER_APP_UUID, irks={"wear-1": IRK.hex().upper()}))
    see(pipeline, PHONE, ibeacon_frame(UUID(OTHER_APP_UUID), 0x104D, 0xE62A, -59), -60)
    see(pipeline, wearable, heart_rate_strap_frame(), -60)
    subjects = [(e.subject.type, e.subject.ref) for e in sink.events]
    assert subjects == [(SubjectType.APP, "104de62a"), (SubjectType.WEARABLE, "wear-1")]


def test_a_config_the_pipeline_cannot_use_changes_nothing() -> None:
    pipeline, sink, _ = make_pipeline()
    pipeline.apply_config(config(version=5, zones=[{"zone_id": "door", "enter_distance_m": 2}]))
    with pytest.raises(ValueError, match="unknown classes"):
        pipeline.apply_config(config(version=6, calibration={"by_device_class": {"toaster": -60}}))
    with pytest.raises(ValueError, match="another gateway"):
        pipeline.apply_config(config(version=7, gateway_id="gw-2"))
    assert pipeline.heartbeat.config_version == 5
    see(pipeline, PHONE, nearby_info_frame(b"abc"), -60)
    assert [e.zone_id for e in sink.events] == ["door"]


# --- parsing, persisting, rejecting -------------------------------------------------------------


def settings_in(tmp_path: Path, **overrides: Any) -> GatewaySettings:
    return GatewaySettings(outbox_path=tmp_path / "outbox.db", app_uuid=APP_UUID, **overrides)


def test_the_config_is_kept_next_to_the_outbox(tmp_path: Path) -> None:
    assert persisted_config_path(settings_in(tmp_path)) == tmp_path / "outbox.config.json"
    assert persisted_config_path(GatewaySettings(outbox_path=":memory:")) is None


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "Invalid JSON"),
        (b'{"version": 1, "store_id": "store-1"}', "gateway_id: Field required"),
        (
            b'{"version": 1, "store_id": "store-1", "gateway_id": "gw-2"}',
            "config is for store-1/gw-2",
        ),
        (
            b'{"version": 1, "store_id": "store-1", "gateway_id": "gw-1", "zones": []}',
            "zones: ",
        ),
        (
            b'{"version": 1, "store_id": "store-1", "gateway_id": "gw-1", "zones": '
            b'[{"zone_id": "a", "enter_distance_m": 3, "exit_distance_m": 2}]}',
            "exit_distance_m must not be below enter_distance_m",
        ),
        (
            b'{"version": 1, "store_id": "store-1", "gateway_id": "gw-1", "colour": "red"}',
            "colour: Extra inputs are not permitted",
        ),
    ],
)
def test_invalid_configs_are_rejected_with_a_reason(
    tmp_path: Path, payload: bytes, reason: str
) -> None:
    with pytest.raises(ConfigRejectedError, match=reason):
        parse_config(payload, settings_in(tmp_path))


def test_a_rejection_never_repeats_the_irks(tmp_path: Path) -> None:
    secret = "00112233445566778899aabbccddeeff"
    payload = json.dumps(
        {
            "version": 1,
            "store_id": "store-1",
            "gateway_id": "gw-1",
            "irks": {"wear-1": secret + "00", "wear-2": secret},
        }
    ).encode()
    with pytest.raises(ConfigRejectedError) as rejected:
        parse_config(payload, settings_in(tmp_path))
    assert "irks.wear-1" in str(rejected.value)
    assert "0011223344" not in str(rejected.value)
    valid = parse_config(
        json.dumps(
            {"version": 1, "store_id": "store-1", "gateway_id": "gw-1", "irks": {"w": secret}}
        ).encode(),
        settings_in(tmp_path),
    )
    assert "0011223344" not in repr(valid)


def remote_for(
    tmp_path: Path, **overrides: Any
) -> tuple[RemoteConfig, GatewayPipeline, ListSink, list[str]]:
    settings = settings_in(tmp_path, **overrides)
    sink, clock = ListSink(), SteppedClock(T0)
    pipeline = GatewayPipeline(settings, sink, clock)
    changes: list[str] = []
    remote = RemoteConfig(
        settings,
        pipeline,
        path=persisted_config_path(settings),
        on_change=lambda: changes.append(str(pipeline.heartbeat.config_error)),
    )
    return remote, pipeline, sink, changes


def payload(**fields: Any) -> bytes:
    return config(**fields).model_dump_json(exclude_none=True).encode()


def test_a_good_config_is_applied_and_saved_a_bad_one_rejected_and_the_good_one_kept(
    tmp_path: Path,
) -> None:
    remote, pipeline, _, changes = remote_for(tmp_path)
    good = payload(version=3, staff_beacons=[f"{STAFF}:7:1"], irks={"wear-1": IRK.hex()})
    remote.on_message(good)
    assert (pipeline.heartbeat.config_version, pipeline.heartbeat.config_error) == (3, None)
    assert remote.path is not None
    saved = remote.path
    assert GatewayConfig.model_validate_json(saved.read_bytes()).version == 3
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600, "it holds IRKs"
    before = saved.read_bytes()

    remote.on_message(good)  # the retained config again after a reconnect: nothing to do
    assert changes == ["None"]

    remote.on_message(b'{"version": 4, "store_id": "store-1", "gateway_id": "gw-1", "zones": []}')
    assert pipeline.heartbeat.config_version == 3
    assert pipeline.heartbeat.config_error is not None
    assert pipeline.heartbeat.config_error.startswith("zones:")
    assert saved.read_bytes() == before
    assert remote.current is not None and remote.current.version == 3
    status = pipeline.status(GatewayState.ONLINE, T0)
    assert (status.config_version, status.config_error) == (3, pipeline.heartbeat.config_error)

    remote.on_message(b"")  # the retained config was deleted: keep what we have
    assert pipeline.heartbeat.config_version == 3

    remote.on_message(good)  # the good one again clears the error
    assert (pipeline.heartbeat.config_version, pipeline.heartbeat.config_error) == (3, None)
    assert len(changes) == 3


def test_a_restart_without_the_broker_uses_the_saved_config(tmp_path: Path) -> None:
    remote, _, _, _ = remote_for(tmp_path)
    remote.on_message(payload(version=9, staff_beacons=[f"{STAFF}:7:1"]))
    # A new process: the broker is not reachable, the saved config is used.
    again, pipeline, sink, _ = remote_for(tmp_path)
    loaded = again.load_persisted()
    assert loaded is not None and loaded.version == 9
    assert pipeline.heartbeat.config_version == 9
    see(pipeline, "C1:00:00:00:00:07", ibeacon_frame(STAFF, 7, 1, -59), -60)
    assert sink.events == []


def test_a_damaged_or_foreign_saved_config_is_ignored(tmp_path: Path) -> None:
    remote, pipeline, _, _ = remote_for(tmp_path)
    assert remote.path is not None
    remote.path.write_text("{ half a file")
    assert remote.load_persisted() is None
    write_config(remote.path, config(version=2, gateway_id="gw-9"))
    assert remote.load_persisted() is None
    assert pipeline.heartbeat.config_version is None


def test_messages_from_another_thread_are_applied_through_call_soon(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    pipeline = GatewayPipeline(settings, ListSink(), SteppedClock(T0))
    queued: list[Any] = []
    remote = RemoteConfig(settings, pipeline, path=None, call_soon=queued.append)
    remote.on_message(payload(version=4))
    assert pipeline.heartbeat.config_version is None and len(queued) == 1
    queued[0]()
    assert pipeline.heartbeat.config_version == 4


# --- over a real broker -------------------------------------------------------------------------


def publish_retained(broker: Mosquitto, topic: str, payload: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def run_for(settings: GatewaySettings, seconds: float, speed: float = 20.0) -> None:
    start = time.time()
    clock = ScaledClock(start=start, speed=speed)
    world = demo_world(settings.app_uuid, start, demo_app_keys(2), anonymous=1, seed=0)

    async def main() -> None:
        async with simulated_gateway(settings, clock, world):
            await asyncio.sleep(seconds)

    asyncio.run(main())


def test_remote_config_over_mosquitto(mosquitto: Mosquitto, tmp_path: Path) -> None:
    settings = GatewaySettings(
        mqtt_url=mosquitto.url,
        outbox_path=tmp_path / "outbox.db",
        store_beacons=[DEMO_STORE_BEACON_ID],
        heartbeat_s=2,
    )
    topic = config_topic("store-1", "gw-1")
    publish_retained(mosquitto, topic, payload(version=3, staff_beacons=[f"{STAFF}:7:1"]))
    statuses = Collector(mosquitto.host, mosquitto.port, status_topic("store-1", "gw-1"))
    statuses.wait_subscribed()
    bad = b'{"version": 4, "store_id": "store-1", "gateway_id": "gw-1", "irks": {"w": "xyz"}}'

    def versions() -> list[tuple[int | None, str | None]]:
        return [(s.config_version, s.config_error) for s, _ in statuses.statuses()]

    async def first_run() -> None:
        start = time.time()
        clock = ScaledClock(start=start, speed=20.0)
        world = demo_world(settings.app_uuid, start, demo_app_keys(2), anonymous=1, seed=0)
        async with simulated_gateway(settings, clock, world):
            deadline = time.monotonic() + 10
            while (3, None) not in versions() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert (3, None) in versions(), versions()
            await asyncio.to_thread(publish_retained, mosquitto, topic, bad)
            deadline = time.monotonic() + 10
            while not any(e for _, e in versions()) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)

    asyncio.run(first_run())
    rejected = [(v, e) for v, e in versions() if e]
    assert rejected, versions()
    version, error = rejected[0]
    assert version == 3, "the last good config stays in use"
    assert error is not None and error.startswith("irks.w:") and "xyz" not in error
    assert wait_until(lambda: statuses.statuses()[-1][0].state is GatewayState.OFFLINE)
    final, _ = statuses.statuses()[-1]
    assert final.state is GatewayState.OFFLINE and final.config_version == 3
    saved = persisted_config_path(settings)
    assert saved is not None
    assert GatewayConfig.model_validate_json(saved.read_bytes()).version == 3

    # The retained config disappears from the broker; a restarted gateway still uses version 3.
    publish_retained(mosquitto, topic, b"")
    statuses.close()
    again = Collector(mosquitto.host, mosquitto.port, status_topic("store-1", "gw-1"))
    again.wait_subscribed()
    run_for(settings, 1.0)
    assert wait_until(
        lambda: any(s.state is GatewayState.OFFLINE for s, r in again.statuses() if not r)
    )
    # Not the retained status of the first run: what the restarted gateway sent.
    after_restart = [s for s, was_retained in again.statuses() if not was_retained]
    again.close()
    assert after_restart and all(s.config_version == 3 for s in after_restart)
    assert all(s.config_error is None for s in after_restart)


def test_a_local_exit_distance_below_the_enter_distance_is_refused() -> None:
    with pytest.raises(ValueError, match="exit_distance_m"):
        GatewaySettings(enter_distance_m=3, exit_distance_m=2)
    assert GatewaySettings(enter_distance_m=3, exit_distance_m=4).exit_distance_m == 4
