from __future__ import annotations

import re
import statistics
from collections import defaultdict
from itertools import pairwise
from uuid import UUID

import pytest
from bluetooth_data_tools import parse_advertisement_data_bytes

from firmware_sim.world import (
    DEMO_STORE_BEACON,
    SimAdvert,
    SimShopper,
    StoreWorld,
    demo_app_keys,
    demo_world,
)
from gateway.decode import decode_ibeacon
from storelink.tokens import TOKEN_WINDOW_S, app_token, token_major_minor, token_window

APP_UUID = "5f2dd896-b886-4549-ae01-e41acd7a354a"
# A window boundary, so that tests know exactly when tokens and addresses rotate.
START = 1_960_000 * TOKEN_WINDOW_S
KEY = bytes(range(32))


def one_shopper(app_key: bytes | None, *, arrive_s: float = 20, stay_s: float = 30) -> StoreWorld:
    return StoreWorld(
        app_uuid=APP_UUID,
        gateways={"gw-1": (0.0, 1.0)},
        shoppers=[SimShopper("p", app_key, arrive_s=arrive_s, stay_s=stay_s)],
        store_beacons=[],
        start=START,
        seed=5,
    )


def manufacturer_data(advert: SimAdvert) -> dict[int, bytes]:
    return dict(parse_advertisement_data_bytes(advert.raw)[3])


def test_same_seed_same_adverts_other_seed_others() -> None:
    def adverts(seed: int) -> list[SimAdvert]:
        world = demo_world(APP_UUID, START, demo_app_keys(2), anonymous=1, seed=seed)
        return world.adverts_between("gw-1", START, START + 30)

    assert adverts(1) == adverts(1)
    assert adverts(1) != adverts(2)


def test_adverts_do_not_depend_on_how_time_is_sliced() -> None:
    world = demo_world(APP_UUID, START, demo_app_keys(2), anonymous=1, seed=1)
    whole = world.adverts_between("gw-1", START, START + 20)
    sliced = [
        advert
        for tick in range(200)
        for advert in world.adverts_between("gw-1", START + tick * 0.1, START + (tick + 1) * 0.1)
    ]
    assert sliced == whole
    assert [a.t for a in whole] == sorted(a.t for a in whole)
    assert all(START <= a.t < START + 20 for a in whole)


def test_a_shopper_is_heard_only_around_the_visit() -> None:
    world = one_shopper(None, arrive_s=30, stay_s=20)
    # 15 m of street at 1.2 m/s before the door, the same after leaving it.
    assert world.adverts_between("gw-1", START, START + 16) == []
    assert world.adverts_between("gw-1", START + 20, START + 60) != []
    assert world.adverts_between("gw-1", START + 70, START + 200) == []


def test_rssi_is_stronger_by_the_gateway_than_out_on_the_street() -> None:
    world = one_shopper(KEY, arrive_s=20, stay_s=30)
    approach = world.adverts_between("gw-1", START + 8, START + 12)
    inside = world.adverts_between("gw-1", START + 25, START + 45)
    assert (
        statistics.fmean(a.rssi for a in inside) > statistics.fmean(a.rssi for a in approach) + 10
    )
    assert all(-100 <= a.rssi <= 0 for a in approach + inside)


def test_app_shopper_advertises_the_token_of_the_window() -> None:
    world = one_shopper(KEY, arrive_s=20, stay_s=30)
    adverts = world.adverts_between("gw-1", START, START + 60)
    assert adverts
    expected = token_major_minor(app_token(KEY, token_window(START)))
    for advert in adverts:
        beacon = decode_ibeacon(manufacturer_data(advert))
        assert beacon is not None
        assert (beacon.uuid, beacon.major, beacon.minor) == (APP_UUID, *expected)
        assert beacon.measured_power == -59


def test_token_and_address_rotate_together_every_15_minutes() -> None:
    # Arrives just before a window boundary and stays across it.
    world = one_shopper(KEY, arrive_s=TOKEN_WINDOW_S - 20, stay_s=60)
    before = world.adverts_between("gw-1", START + TOKEN_WINDOW_S - 15, START + TOKEN_WINDOW_S)
    after = world.adverts_between("gw-1", START + TOKEN_WINDOW_S, START + TOKEN_WINDOW_S + 15)
    assert before and after
    assert len({a.address for a in before}) == len({a.address for a in after}) == 1
    assert before[0].address != after[0].address
    assert len({a.raw for a in before}) == len({a.raw for a in after}) == 1
    after_beacon = decode_ibeacon(manufacturer_data(after[0]))
    assert after_beacon is not None
    assert (after_beacon.major, after_beacon.minor) == token_major_minor(
        app_token(KEY, token_window(START) + 1)
    )


def test_phones_use_resolvable_private_addresses() -> None:
    world = demo_world(APP_UUID, START, demo_app_keys(3), anonymous=3, seed=4)
    adverts = world.adverts_between("gw-1", START, START + 40)
    addresses = {a.address for a in adverts}
    assert len(addresses) == 7  # six phones and the store beacon
    for address in addresses:
        assert re.fullmatch(r"([0-9A-F]{2}:){5}[0-9A-F]{2}", address)
    store_beacon = str(DEMO_STORE_BEACON[0])
    phones = {
        a.address
        for a in adverts
        if getattr(decode_ibeacon(manufacturer_data(a)), "uuid", None) != store_beacon
    }
    assert len(phones) == 6
    phone_top_bits = {int(address[:2], 16) >> 6 for address in phones}
    assert phone_top_bits == {0b01}


def test_a_phone_without_the_app_sends_nearby_info_only() -> None:
    adverts = one_shopper(None).adverts_between("gw-1", START, START + 60)
    assert adverts
    for advert in adverts:
        data = manufacturer_data(advert)
        assert decode_ibeacon(data) is None
        assert data[0x004C][0] == 0x10


def test_advertising_interval_and_packet_loss() -> None:
    world = StoreWorld(
        app_uuid=APP_UUID,
        gateways={"gw-1": (0.0, 1.0)},
        shoppers=[],
        store_beacons=[DEMO_STORE_BEACON],
        start=START,
        seed=9,
    )
    adverts = world.adverts_between("gw-1", START, START + 60)
    # Every 100 ms with about 10 % lost: 540 expected of 600 sent.
    assert 500 <= len(adverts) <= 580
    gaps = [b.t - a.t for a, b in pairwise(adverts)]
    assert min(gaps) > 0.08
    beacon = decode_ibeacon(manufacturer_data(adverts[0]))
    assert beacon is not None
    assert (UUID(beacon.uuid), beacon.major, beacon.minor) == DEMO_STORE_BEACON


def test_each_gateway_hears_its_own_signal() -> None:
    world = StoreWorld(
        app_uuid=APP_UUID,
        gateways={"door": (0.0, 1.0), "back": (0.0, 20.0)},
        shoppers=[SimShopper("p", KEY, arrive_s=5, stay_s=30)],
        store_beacons=[],
        start=START,
        seed=3,
    )
    near = world.adverts_between("door", START + 10, START + 30)
    far = world.adverts_between("back", START + 10, START + 30)
    assert statistics.fmean(a.rssi for a in near) > statistics.fmean(a.rssi for a in far) + 15


def test_demo_world_brings_every_app_shopper_within_20_seconds() -> None:
    keys = demo_app_keys(4)
    world = demo_world(APP_UUID, START, keys, anonymous=2, seed=0)
    heard: dict[tuple[int, int], list[int]] = defaultdict(list)
    for advert in world.adverts_between("gw-1", START, START + 20):
        beacon = decode_ibeacon(manufacturer_data(advert))
        if beacon is not None and beacon.uuid == APP_UUID:
            heard[beacon.major, beacon.minor].append(advert.rssi)
    expected = {token_major_minor(app_token(key, token_window(START))) for key in keys}
    assert set(heard) == expected
    # Each has been close to the gateway, not just heard from the street.
    assert all(max(rssis) > -66 for rssis in heard.values())


def test_demo_app_keys_are_fixed_and_distinct() -> None:
    assert demo_app_keys(3) == demo_app_keys(3)
    assert len(set(demo_app_keys(5))) == 5
    assert all(len(key) == 32 for key in demo_app_keys(2))


def test_bad_worlds_are_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        SimShopper("p", b"short", arrive_s=0, stay_s=1)
    with pytest.raises(ValueError, match="unique"):
        StoreWorld(
            app_uuid=APP_UUID,
            gateways={"gw-1": (0, 0)},
            shoppers=[SimShopper("p", None, 0, 1), SimShopper("p", None, 5, 1)],
            store_beacons=[],
            start=START,
            seed=0,
        )
    with pytest.raises(KeyError):
        one_shopper(None).adverts_between("gw-9", START, START + 1)


def test_demo_world_rounds_bring_shoppers_back_with_new_addresses() -> None:
    keys = demo_app_keys(1)
    once = demo_world(APP_UUID, START, keys, anonymous=0, seed=3)
    twice = demo_world(APP_UUID, START, keys, anonymous=0, seed=3, rounds=2, round_s=100.0)

    def heard(world: StoreWorld, t0: float, t1: float) -> list[SimAdvert]:
        """The shopper's adverts, without the store's own beacon."""
        adverts = world.adverts_between("gw-1", START + t0, START + t1)
        return [a for a in adverts if DEMO_STORE_BEACON[0].bytes not in a.raw]

    first_visit = heard(twice, 0, 60)
    assert first_visit == heard(once, 0, 60)
    assert heard(once, 100, 160) == []
    second_visit = heard(twice, 100, 160)
    assert second_visit
    assert {a.address for a in second_visit}.isdisjoint({a.address for a in first_visit})
    with pytest.raises(ValueError, match="rounds"):
        demo_world(APP_UUID, START, keys, rounds=0)
