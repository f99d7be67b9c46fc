from __future__ import annotations

import re
from datetime import date
from typing import Any
from uuid import UUID

import pytest
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from hypothesis import given
from hypothesis import strategies as st

from firmware_sim import eddystone
from firmware_sim.addresses import resolvable_private_address
from firmware_sim.frames import ibeacon_frame, manufacturer_ad, nearby_info_frame
from gateway.config import GatewaySettings
from gateway.decode import Decoded, decode_advertisement
from gateway.identify import (
    IdentityResolver,
    IdentityRules,
    IrkResolver,
    SameDevice,
    anonymous_ref,
    day_key,
    identify,
    is_resolvable_private_address,
    pseudonym,
    utc_day,
)
from gateway.pipeline import GatewayPipeline
from gateway.sources_replay import RecordedAdvert, advertisement
from storelink.clock import SteppedClock
from storelink.tokens import token_ref
from storelink.wire import PresenceKind, Subject, SubjectType
from storelink.wire import contains_mac_address as has_mac
from tests.helpers import ListSink, bluez_advert

APP_UUID = "5f2dd896-b886-4549-ae01-e41acd7a354a"
STORE_UUID = UUID("f7826da6-4fa2-4e98-8024-bc5b71e0893e")
STORE_EDDYSTONE = (bytes.fromhex("8b0ca750095477cb3e77"), bytes.fromhex("000000000001"))
# Bluetooth Core Specification v5.4, Vol 3, Part H, Appendix D.7: ah(k, r) = 0x0dfbaa.
SPEC_IRK = bytes.fromhex("ec0234a357c8ad05341010a60a397d9b")
SPEC_RPA = "70:81:94:0D:FB:AA"
RULES = IdentityRules(
    app_uuid=APP_UUID,
    store_beacons=frozenset(
        {f"{STORE_UUID}:100:1", f"{STORE_EDDYSTONE[0].hex()}:{STORE_EDDYSTONE[1].hex()}"}
    ),
    pseudonym_key=b"k" * 32,
    irks={"wearable-ana": SPEC_IRK},
)
ADDRESS = "4A:1B:2C:3D:4E:5F"
T0 = 1_764_000_000.0  # 2025-11-24T16:00:00Z

addresses = st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02X}" for x in b))


def decoded(raw: bytes) -> Decoded:
    return decode_advertisement(raw, app_uuid=APP_UUID)


PHONE = decoded(nearby_info_frame(b"abc"))


def test_the_app_is_known_only_by_its_rotating_token() -> None:
    subject = identify(
        ADDRESS, decoded(ibeacon_frame(UUID(APP_UUID), 0x104D, 0xE62A, -59)), RULES, T0
    )
    assert subject is not None
    assert subject.type is SubjectType.APP
    assert subject.ref == token_ref(0x104D, 0xE62A) == "104de62a"
    # Decoded without knowing the app UUID, the rules still recognise it.
    plain = decode_advertisement(ibeacon_frame(UUID(APP_UUID), 1, 2, -59))
    assert identify(ADDRESS, plain, RULES, T0) == identify(
        ADDRESS, decoded(ibeacon_frame(UUID(APP_UUID), 1, 2, -59)), RULES, T0
    )


def test_app_uuid_matches_whatever_its_case_in_the_settings() -> None:
    rules = IdentityRules(APP_UUID.upper(), frozenset(), b"k")
    raw = ibeacon_frame(UUID(APP_UUID), 1, 2, -59)
    subject = identify(ADDRESS, decode_advertisement(raw), rules, T0)
    assert subject is not None and subject.type is SubjectType.APP


def test_the_stores_own_beacons_are_not_footfall() -> None:
    assert identify(ADDRESS, decoded(ibeacon_frame(STORE_UUID, 100, 1, -59)), RULES, T0) is None
    store_uid = decoded(eddystone.uid_frame(*STORE_EDDYSTONE, -18))
    assert identify(ADDRESS, store_uid, RULES, T0) is None
    store_altbeacon = decoded(
        manufacturer_ad(0x0118, b"\xbe\xac" + STORE_UUID.bytes + b"\x00\x64\x00\x01\xc5\x00")
    )
    assert identify(ADDRESS, store_altbeacon, RULES, T0) is None


def test_other_beacons_are_beacon_subjects() -> None:
    subject = identify(ADDRESS, decoded(ibeacon_frame(UUID(int=3), 1, 2, -59)), RULES, T0)
    assert subject is not None
    assert (subject.type, subject.ref) == (SubjectType.BEACON, f"{UUID(int=3)}.1.2")
    altbeacon = decoded(manufacturer_ad(0x0118, b"\xbe\xac" + bytes(16) + b"\0\1\0\2\xc5\0"))
    subject = identify(ADDRESS, altbeacon, RULES, T0)
    assert subject is not None
    assert (subject.type, subject.ref) == (SubjectType.BEACON, f"{UUID(int=0)}.1.2")
    uid = decoded(eddystone.uid_frame(bytes(10), b"\x01" * 6, -18))
    subject = identify(ADDRESS, uid, RULES, T0)
    assert subject is not None
    assert (subject.type, subject.ref) == (SubjectType.BEACON, "00000000000000000000.010101010101")


def test_telemetry_and_urls_name_nobody() -> None:
    for raw in (
        eddystone.tlm_frame(3000, 21.0, 5, 10.0),
        eddystone.url_frame("https://shop.example", -18),
        bytes.fromhex("0201060303aafe0d16aafe30f80102030405060708"),  # EID
    ):
        assert identify(ADDRESS, decoded(raw), RULES, T0) is None


def test_a_phone_without_the_app_is_an_anonymous_pseudonym() -> None:
    subject = identify(ADDRESS, PHONE, RULES, T0)
    assert subject is not None
    assert subject.type is SubjectType.ANONYMOUS
    assert re.fullmatch(r"anon-[0-9a-f]{16}", subject.ref)
    assert subject == identify(ADDRESS.lower(), PHONE, RULES, T0)
    assert subject != identify("4A:1B:2C:3D:4E:60", PHONE, RULES, T0)
    # Whatever the device says, only its address counts: nothing else is an identity.
    assert subject == identify(ADDRESS, decoded(nearby_info_frame(b"xyz")), RULES, T0)
    assert subject == identify(ADDRESS, decoded(b""), RULES, T0)


def test_pseudonyms_depend_on_the_gateway_key() -> None:
    assert pseudonym(ADDRESS, b"one") != pseudonym(ADDRESS, b"two")
    assert anonymous_ref(ADDRESS, b"one", T0) != anonymous_ref(ADDRESS, b"two", T0)


def test_pseudonyms_change_every_utc_day_and_only_then() -> None:
    midnight = 1_764_028_800.0  # 2025-11-25T00:00:00Z
    assert utc_day(midnight - 0.001) == date(2025, 11, 24)
    assert utc_day(midnight) == date(2025, 11, 25)
    today = anonymous_ref(ADDRESS, b"k", midnight - 0.001)
    assert anonymous_ref(ADDRESS, b"k", midnight - 86_000) == today
    tomorrow = anonymous_ref(ADDRESS, b"k", midnight)
    assert tomorrow != today
    assert anonymous_ref(ADDRESS, b"k", midnight + 86_399) == tomorrow
    # The day's key is derived from the configured key and the date, nothing else.
    assert tomorrow == pseudonym(ADDRESS, day_key(b"k", date(2025, 11, 25)))
    assert day_key(b"k", date(2025, 11, 25)) != day_key(b"k", date(2025, 11, 24))
    assert day_key(b"k", date(2025, 11, 25)) != day_key(b"j", date(2025, 11, 25))
    subject = identify(ADDRESS, PHONE, RULES, midnight)
    assert subject is not None and subject.ref == anonymous_ref(ADDRESS, b"k" * 32, midnight)


@given(addresses, st.floats(0, 4e9))
def test_the_address_never_shows_in_a_subject(address: str, t: float) -> None:
    subject = identify(address, PHONE, RULES, t)
    assert subject is not None
    text = subject.model_dump_json()
    assert not has_mac(text)
    assert address.replace(":", "").lower() not in text.lower()


# --- wearables: resolvable private addresses and IRKs -------------------------------------------


def test_the_core_specifications_ah_vector_resolves() -> None:
    assert is_resolvable_private_address(SPEC_RPA)
    resolver = IrkResolver({"wearable-ana": SPEC_IRK})
    assert resolver.resolve(SPEC_RPA) == "wearable-ana"
    assert resolver.resolve(SPEC_RPA.lower()) == "wearable-ana"
    assert resolver.resolve("70:81:94:0D:FB:AB") is None
    assert IrkResolver({}).resolve(SPEC_RPA) is None


@pytest.mark.parametrize(
    "address",
    [
        "F0:81:94:0D:FB:AA",  # static random (top bits 11)
        "30:81:94:0D:FB:AA",  # non-resolvable private (00)
        "0DB3A4E1-6D3C-4E2B-9E6A-1C5E2F3A4B5C",  # CoreBluetooth hides addresses behind UUIDs
        "not an address",
    ],
)
def test_only_resolvable_private_addresses_are_tried(address: str) -> None:
    assert not is_resolvable_private_address(address)
    assert IrkResolver({"w": SPEC_IRK}).resolve(address) is None


def test_a_consenting_shoppers_wearable_keeps_its_identity_through_address_rotation() -> None:
    irk = bytes(range(16))
    resolver = IdentityResolver(
        IdentityRules(APP_UUID, frozenset(), b"k", irks={"watch-7": irk, "band-9": SPEC_IRK})
    )
    watch = decoded(nearby_info_frame(b"abc", action_code=0x0A))
    subjects = {
        resolver.identify(resolvable_private_address(irk, prand), watch, T0)
        for prand in (b"\x40\x00\x01", b"\x55\xaa\x02", b"\x7f\xff\xff")
    }
    assert len(subjects) == 1
    [subject] = subjects
    assert subject is not None
    assert (subject.type, subject.ref) == (SubjectType.WEARABLE, "watch-7")
    # Someone else's watch stays anonymous.
    other = resolver.identify(resolvable_private_address(b"\xee" * 16, b"\x40\0\1"), watch, T0)
    assert other is not None and other.type is SubjectType.ANONYMOUS


def test_the_app_token_comes_before_the_wearable_and_the_wearable_before_a_beacon() -> None:
    resolver = IdentityResolver(RULES)
    token = decoded(ibeacon_frame(UUID(APP_UUID), 1, 2, -59))
    beacon = decoded(ibeacon_frame(UUID(int=9), 1, 2, -59))
    assert resolver.identify(SPEC_RPA, token, T0).type is SubjectType.APP  # type: ignore[union-attr]
    assert resolver.identify(SPEC_RPA, beacon, T0).type is SubjectType.WEARABLE  # type: ignore[union-attr]


def test_irks_can_be_replaced_and_resolutions_are_forgotten() -> None:
    resolver = IdentityResolver(RULES)
    assert resolver.identify(SPEC_RPA, PHONE, T0).type is SubjectType.WEARABLE  # type: ignore[union-attr]
    resolver.set_irks({})
    assert resolver.identify(SPEC_RPA, PHONE, T0).type is SubjectType.ANONYMOUS  # type: ignore[union-attr]
    resolver.set_irks({"wearable-bo": SPEC_IRK})
    assert resolver.identify(SPEC_RPA, PHONE, T0).ref == "wearable-bo"  # type: ignore[union-attr]


def test_bad_irks_are_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        IdentityRules(APP_UUID, frozenset(), b"k", irks={"w": b"short"})
    with pytest.raises(ValueError, match="hardware address"):
        IdentityRules(APP_UUID, frozenset(), b"k", irks={"70:81:94:0D:FB:AA": SPEC_IRK})


def test_irks_from_the_settings() -> None:
    settings = GatewaySettings(
        irks={"wearable-ana": "EC:02:34:A3:57:C8:AD:05:34:10:10:A6:0A:39:7D:9B"}
    )
    assert settings.irk_bytes() == {"wearable-ana": SPEC_IRK}
    assert "ec02" not in repr(settings).lower()
    with pytest.raises(ValueError, match="32 hex digits"):
        GatewaySettings(irks={"w": "ec0234"})
    with pytest.raises(ValueError, match="hardware address"):
        GatewaySettings(irks={"70:81:94:0D:FB:AA": SPEC_IRK.hex()})


# --- through the pipeline -----------------------------------------------------------------------


def advert(raw: bytes, rssi: int) -> AdvertisementData:
    """As the simulator and replay give it: raw bytes in platform_data."""
    return advertisement(RecordedAdvert(0.0, "x", rssi, raw))[1]


def pipeline(t: float = T0, **overrides: Any) -> tuple[GatewayPipeline, ListSink, SteppedClock]:
    settings = GatewaySettings(app_uuid=APP_UUID, pseudonym_key="k" * 32, **overrides)
    sink, clock = ListSink(), SteppedClock(t)
    return GatewayPipeline(settings, sink, clock), sink, clock


def test_a_wearable_walks_in_once_whatever_its_addresses() -> None:
    irk = bytes(range(16))
    gateway, sink, clock = pipeline(irks={"band-ana": irk.hex()})
    adv = advert(nearby_info_frame(b"abc", action_code=0x0A), -60)
    for prand in (b"\x40\x00\x01", b"\x41\x00\x02", b"\x42\x00\x03"):
        address = resolvable_private_address(irk, prand)
        gateway.on_advertisement(BLEDevice(address, None, None), adv)
        clock.t += 1
    gateway.close(clock.t)
    assert [(e.kind, e.subject.type, e.subject.ref) for e in sink.events] == [
        (PresenceKind.ENTER, SubjectType.WEARABLE, "band-ana"),
        (PresenceKind.EXIT, SubjectType.WEARABLE, "band-ana"),
    ]
    assert not any(has_mac(e.model_dump_json()) for e in sink.events)


def test_the_pipeline_takes_new_irks() -> None:
    gateway, sink, _ = pipeline()
    adv = advert(nearby_info_frame(b"abc"), -60)
    gateway.on_advertisement(BLEDevice(SPEC_RPA, None, None), adv)
    gateway.set_irks({"wearable-ana": SPEC_IRK})
    gateway.on_advertisement(BLEDevice(SPEC_RPA, None, None), adv)
    assert [e.subject.type for e in sink.events] == [SubjectType.ANONYMOUS, SubjectType.WEARABLE]


def test_store_telemetry_makes_no_presence() -> None:
    gateway, sink, clock = pipeline()
    tlm = advert(eddystone.tlm_frame(2900, 20.0, 10, 20.0), -50)
    for _ in range(5):
        gateway.on_advertisement(BLEDevice("C0:00:00:00:00:01", None, None), tlm)
        clock.t += 1
    assert sink.events == []
    assert gateway.counters.decode_errors == 0


def test_an_eddystone_beacon_ranges_with_its_0m_power() -> None:
    gateway, sink, _ = pipeline()
    # Calibrated -18 dBm at 0 m is -59 at 1 m: received at -59, the beacon is 1 m away.
    uid = advert(eddystone.uid_frame(bytes(10), bytes(6), -18), -59)
    gateway.on_advertisement(BLEDevice("C0:00:00:00:00:02", None, None), uid)
    [event] = sink.events
    assert event.subject.type is SubjectType.BEACON
    assert event.distance_m == pytest.approx(1.0)


def test_at_utc_midnight_anonymous_pseudonyms_change() -> None:
    midnight = 1_764_028_800.0
    gateway, sink, clock = pipeline(t=midnight - 1, exit_timeout_s=5)
    adv = advert(nearby_info_frame(b"abc"), -60)
    phone = BLEDevice(ADDRESS, None, None)
    gateway.on_advertisement(phone, adv)
    clock.t = midnight + 1
    gateway.on_advertisement(phone, adv)
    before, after = (e.subject.ref for e in sink.events)
    assert before == anonymous_ref(ADDRESS, b"k" * 32, midnight - 1)
    assert after == anonymous_ref(ADDRESS, b"k" * 32, midnight + 1)
    assert before != after


# --- one device, several subjects ---------------------------------------------------------------

_TOKEN_1 = Subject(type=SubjectType.APP, ref=token_ref(1, 1))
_TOKEN_2 = Subject(type=SubjectType.APP, ref=token_ref(2, 2))
_PHONE_A = Subject(type=SubjectType.ANONYMOUS, ref="anon-00000000000000aa")
_PHONE_B = Subject(type=SubjectType.ANONYMOUS, ref="anon-00000000000000bb")


def _nobody(_: Subject) -> bool:
    return False


def test_the_phones_own_broadcast_goes_by_the_apps_token_heard_on_its_address() -> None:
    links = SameDevice(forget_after_s=20.0)
    assert links.subject("A", _PHONE_A, 0.0, _nobody) == _PHONE_A  # nothing better known yet
    assert links.subject("A", _TOKEN_1, 0.1, _nobody) == _TOKEN_1
    assert links.subject("A", _PHONE_A, 0.2, _nobody) == _TOKEN_1
    # Another address is another device.
    assert links.subject("B", _PHONE_B, 0.3, _nobody) == _PHONE_B


def test_a_stay_under_one_subject_goes_on_when_the_token_or_the_address_changes() -> None:
    links = SameDevice(forget_after_s=20.0)
    present = {_PHONE_A}
    assert links.subject("A", _PHONE_A, 0.0, present.__contains__) == _PHONE_A
    # The token heard on the address continues the pseudonym's stay while it lasts.
    assert links.subject("A", _TOKEN_1, 1.0, present.__contains__) == _PHONE_A
    present = {_TOKEN_1}
    assert links.subject("A", _TOKEN_1, 2.0, present.__contains__) == _TOKEN_1
    # A new token window on the same address, then a new address with that token.
    assert links.subject("A", _TOKEN_2, 3.0, present.__contains__) == _TOKEN_1
    assert links.subject("B", _TOKEN_2, 4.0, present.__contains__) == _TOKEN_1
    assert links.subject("B", _PHONE_B, 4.1, present.__contains__) == _TOKEN_1
    # Once that stay is over, the device goes by its current name again.
    assert links.subject("B", _PHONE_B, 5.0, _nobody) == _TOKEN_2


def test_an_address_unheard_for_a_while_is_forgotten() -> None:
    links = SameDevice(forget_after_s=20.0)
    links.subject("A", _TOKEN_1, 0.0, _nobody)
    assert links.subject("A", _PHONE_A, 21.0, _nobody) == _PHONE_A
    links.prune(50.0)
    assert len(links) == 0


def test_the_app_phone_enters_once_not_once_per_broadcast() -> None:
    settings = GatewaySettings(app_uuid=APP_UUID, store_beacons=[])
    sink, clock = ListSink(), SteppedClock(1_764_000_000.0)
    pipeline = GatewayPipeline(settings, sink, clock)
    device = BLEDevice("5A:11:22:33:44:55", None, None)
    for step in range(6):
        clock.t += 0.25
        raw = nearby_info_frame(b"abc") if step % 2 else ibeacon_frame(UUID(APP_UUID), 1, 1, -59)
        pipeline.on_advertisement(device, bluez_advert(raw, -62))
    assert [(e.kind, e.subject.type) for e in sink.events] == [
        (PresenceKind.ENTER, SubjectType.APP)
    ]
