from __future__ import annotations

from typing import Any
from uuid import UUID

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from firmware_sim.frames import ibeacon_frame, nearby_info_frame
from firmware_sim.world import DEMO_STORE_BEACON, DEMO_STORE_BEACON_ID
from gateway.config import GatewaySettings
from gateway.pipeline import IDENTITY_CACHE_SIZE, GatewayPipeline
from storelink.clock import SteppedClock
from storelink.tokens import token_ref
from storelink.wire import (
    GatewayState,
    PresenceKind,
    SubjectType,
    contains_mac_address,
)
from tests.helpers import ListSink, bluez_advert

T0 = 1_764_000_000.0
APP_UUID = "5f2dd896-b886-4549-ae01-e41acd7a354a"
PHONE = "5A:11:22:33:44:55"


def make_pipeline(**overrides: Any) -> tuple[GatewayPipeline, ListSink, SteppedClock]:
    settings = GatewaySettings(app_uuid=APP_UUID, store_beacons=[DEMO_STORE_BEACON_ID], **overrides)
    sink, clock = ListSink(), SteppedClock(T0)
    return GatewayPipeline(settings, sink, clock), sink, clock


def test_an_app_shopper_close_by_enters_under_its_token() -> None:
    pipeline, sink, _ = make_pipeline()
    pipeline.on_advertisement(
        BLEDevice(PHONE, None, None),
        bluez_advert(ibeacon_frame(UUID(APP_UUID), 0x104D, 0xE62A, -59), -62),
    )
    [event] = sink.events
    assert event.kind is PresenceKind.ENTER
    assert (event.subject.type, event.subject.ref) == (SubjectType.APP, token_ref(0x104D, 0xE62A))
    assert event.distance_m is not None and 1.0 < event.distance_m < 1.6
    assert pipeline.counters.adverts_seen == 1
    assert pipeline.counters.events_published == 1


def test_a_phone_without_the_app_is_anonymous_and_its_address_stays_inside() -> None:
    pipeline, sink, _ = make_pipeline()
    pipeline.on_advertisement(
        BLEDevice(PHONE, None, None), bluez_advert(nearby_info_frame(b"abc"), -60)
    )
    [event] = sink.events
    assert event.subject.type is SubjectType.ANONYMOUS
    payload = event.model_dump_json()
    assert not contains_mac_address(payload)
    assert "5a1122334455" not in payload.lower()


def test_the_store_beacon_and_passers_by_make_no_events() -> None:
    pipeline, sink, clock = make_pipeline()
    uuid, major, minor = DEMO_STORE_BEACON
    beacon = bluez_advert(ibeacon_frame(uuid, major, minor, -59), -55)
    passer_by = bluez_advert(nearby_info_frame(b"xyz"), -85)  # about 8 m away
    for _ in range(50):
        pipeline.on_advertisement(BLEDevice("C1:00:00:00:00:01", None, None), beacon)
        pipeline.on_advertisement(BLEDevice(PHONE, None, None), passer_by)
        clock.t += 0.5
    assert sink.events == []
    assert pipeline.counters.adverts_seen == 100


def test_smoothing_carries_a_single_strong_advert_no_closer_than_the_average() -> None:
    pipeline, sink, clock = make_pipeline()
    phone = BLEDevice(PHONE, None, None)
    for _ in range(10):
        pipeline.on_advertisement(phone, bluez_advert(nearby_info_frame(b"abc"), -80))
        clock.t += 0.2
    # One lucky advert at 1 m does not pull a shopper 7 m away into the zone.
    pipeline.on_advertisement(phone, bluez_advert(nearby_info_frame(b"abc"), -59))
    assert sink.events == []


def test_housekeeping_exits_and_beats() -> None:
    pipeline, sink, _ = make_pipeline(exit_timeout_s=20, heartbeat_s=30)
    pipeline.on_advertisement(
        BLEDevice(PHONE, None, None), bluez_advert(nearby_info_frame(b"abc"), -60)
    )
    pipeline.housekeeping(T0 + 19)
    assert [e.kind for e in sink.events] == [PresenceKind.ENTER]
    pipeline.housekeeping(T0 + 20)
    assert [e.kind for e in sink.events] == [PresenceKind.ENTER, PresenceKind.EXIT]
    assert sink.statuses == []
    pipeline.housekeeping(T0 + 30)
    [status] = sink.statuses
    assert status.state is GatewayState.ONLINE
    assert (status.adverts_seen, status.events_published, status.decode_errors) == (1, 2, 0)


def test_close_exits_everyone() -> None:
    pipeline, sink, _ = make_pipeline()
    pipeline.on_advertisement(
        BLEDevice(PHONE, None, None), bluez_advert(nearby_info_frame(b"abc"), -60)
    )
    pipeline.on_advertisement(
        BLEDevice("5B:00:00:00:00:02", None, None), bluez_advert(nearby_info_frame(b"def"), -62)
    )
    pipeline.close(T0 + 5)
    assert [e.kind for e in sink.events].count(PresenceKind.EXIT) == 2


def test_bad_adverts_are_counted_never_raised() -> None:
    pipeline, sink, _ = make_pipeline()
    phone = BLEDevice(PHONE, None, None)
    # BlueZ says 127 when it has no RSSI.
    pipeline.on_advertisement(phone, bluez_advert(nearby_info_frame(b"abc"), 127))
    garbage = AdvertisementData(None, {0x004C: 12345}, {}, [], None, -60, ())  # type: ignore[dict-item]
    pipeline.on_advertisement(phone, garbage)
    assert pipeline.counters.decode_errors == 2
    assert pipeline.counters.adverts_seen == 2
    assert sink.events == []


def test_a_configured_pseudonym_key_makes_pseudonyms_stable_across_restarts() -> None:
    def anonymous_ref(**overrides: object) -> str:
        pipeline, sink, _ = make_pipeline(**overrides)
        pipeline.on_advertisement(
            BLEDevice(PHONE, None, None), bluez_advert(nearby_info_frame(b"abc"), -60)
        )
        return sink.events[0].subject.ref

    assert anonymous_ref(pseudonym_key="k" * 32) == anonymous_ref(pseudonym_key="k" * 32)
    assert anonymous_ref() != anonymous_ref()


def test_a_repeated_advertisement_means_what_it_meant_and_a_changed_one_is_read_again() -> None:
    pipeline, sink, clock = make_pipeline(exit_timeout_s=5)
    device = BLEDevice(PHONE, None, None)
    before = bluez_advert(ibeacon_frame(UUID(APP_UUID), 0x104D, 0xE62A, -59), -60)
    # The token rotated: same phone address, new payload, so a new subject; while the old
    # token's stay lasts it goes on under that (gateway.identify.SameDevice).
    after = bluez_advert(ibeacon_frame(UUID(APP_UUID), 0x0001, 0x0002, -59), -60)
    for adv in (before, before, after):
        pipeline.on_advertisement(device, adv)
        clock.t += 0.1
    clock.t += 10
    pipeline.housekeeping(clock.t)
    pipeline.on_advertisement(device, after)
    # A payload that is not bytes (a backend handing out bytearrays) is read the same way.
    as_bytearray = before._replace(
        manufacturer_data={k: bytearray(v) for k, v in before.manufacturer_data.items()}  # type: ignore[misc]
    )
    pipeline.on_advertisement(device, as_bytearray)
    assert [(e.kind, e.subject.ref) for e in sink.events] == [
        (PresenceKind.ENTER, token_ref(0x104D, 0xE62A)),
        (PresenceKind.EXIT, token_ref(0x104D, 0xE62A)),
        (PresenceKind.ENTER, token_ref(0x0001, 0x0002)),
    ]
    assert pipeline.counters.decode_errors == 0


def test_the_identity_cache_stays_small_under_random_addresses() -> None:
    pipeline, sink, _ = make_pipeline()
    phone = bluez_advert(nearby_info_frame(b"abc"), -60)
    addresses = [
        f"5A:00:00:00:{i // 256:02X}:{i % 256:02X}" for i in range(IDENTITY_CACHE_SIZE + 10)
    ]
    for address in addresses:
        pipeline.on_advertisement(BLEDevice(address, None, None), phone)
    assert len(pipeline._identities) <= IDENTITY_CACHE_SIZE
    assert len({e.subject for e in sink.events}) == len(addresses)
    # Forgotten by the cache, the first phone is identified again as the same subject: still
    # present, so no second enter.
    pipeline.on_advertisement(BLEDevice(addresses[0], None, None), phone)
    assert len(sink.events) == len(addresses)


def test_at_a_door_a_watch_coming_in_with_a_phone_is_not_another_visitor() -> None:
    pipeline, sink, clock = make_pipeline(companion_window_s=2.0)
    phone, watch = BLEDevice(PHONE, None, None), BLEDevice("4B:00:00:00:00:01", None, None)
    for _ in range(4):
        pipeline.on_advertisement(phone, bluez_advert(nearby_info_frame(b"abc"), -62))
        pipeline.on_advertisement(
            watch, bluez_advert(nearby_info_frame(b"def", action_code=0x0A), -64)
        )
        clock.t += 0.5
    assert [e.kind for e in sink.events] == [PresenceKind.ENTER]


def test_at_a_door_only_devices_that_just_arrived_enter() -> None:
    pipeline, sink, clock = make_pipeline(arrival_heard_max_s=60.0)
    inside, walk_in = BLEDevice(PHONE, None, None), BLEDevice("4B:00:00:00:00:02", None, None)
    far = bluez_advert(nearby_info_frame(b"abc"), -90)
    near = bluez_advert(nearby_info_frame(b"abc"), -62)
    # Heard from across the store for two minutes, then past the door: already inside.
    for _ in range(120):
        pipeline.on_advertisement(inside, far)
        clock.t += 1
    # Heard for 20 s from the street, then through the door.
    for _ in range(20):
        pipeline.on_advertisement(walk_in, far)
        clock.t += 1
    for _ in range(10):  # the smoothed RSSI catches up with the near adverts
        pipeline.on_advertisement(inside, near)
        clock.t += 0.3
    assert sink.events == []
    for _ in range(10):
        pipeline.on_advertisement(walk_in, near)
        clock.t += 0.3
    assert [e.kind for e in sink.events] == [PresenceKind.ENTER]
