from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from gateway.decode import IBeacon
from gateway.identify import IdentityRules, identify, pseudonym
from storelink.tokens import token_ref
from storelink.wire import SubjectType, contains_mac_address

APP_UUID = "5f2dd896-b886-4549-ae01-e41acd7a354a"
STORE_BEACON = IBeacon("f7826da6-4fa2-4e98-8024-bc5b71e0893e", 100, 1, -59)
RULES = IdentityRules(
    app_uuid=APP_UUID,
    store_beacons=frozenset({STORE_BEACON.beacon_id}),
    pseudonym_key=b"k" * 32,
)
ADDRESS = "4A:1B:2C:3D:4E:5F"

addresses = st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02X}" for x in b))


def test_the_app_is_known_only_by_its_rotating_token() -> None:
    subject = identify(ADDRESS, IBeacon(APP_UUID, 0x104D, 0xE62A, -59), RULES)
    assert subject is not None
    assert subject.type is SubjectType.APP
    assert subject.ref == token_ref(0x104D, 0xE62A) == "104de62a"


def test_app_uuid_matches_whatever_its_case_in_the_settings() -> None:
    rules = IdentityRules(APP_UUID.upper(), frozenset(), b"k")
    subject = identify(ADDRESS, IBeacon(APP_UUID, 1, 2, -59), rules)
    assert subject is not None and subject.type is SubjectType.APP


def test_the_stores_own_beacons_are_not_footfall() -> None:
    assert identify(ADDRESS, STORE_BEACON, RULES) is None


def test_another_ibeacon_is_a_beacon_subject() -> None:
    beacon = IBeacon("e2c56db5-dffb-48d2-b060-d0f5a71096e0", 1, 2, -59)
    subject = identify(ADDRESS, beacon, RULES)
    assert subject is not None
    assert subject.type is SubjectType.BEACON
    assert subject.ref == "e2c56db5-dffb-48d2-b060-d0f5a71096e0.1.2"


def test_a_phone_without_the_app_is_an_anonymous_pseudonym() -> None:
    subject = identify(ADDRESS, None, RULES)
    assert subject is not None
    assert subject.type is SubjectType.ANONYMOUS
    assert re.fullmatch(r"anon-[0-9a-f]{16}", subject.ref)
    assert subject == identify(ADDRESS.lower(), None, RULES)
    assert subject != identify("4A:1B:2C:3D:4E:60", None, RULES)


def test_pseudonyms_depend_on_the_gateway_key() -> None:
    assert pseudonym(ADDRESS, b"one") != pseudonym(ADDRESS, b"two")


@given(addresses)
def test_the_address_never_shows_in_a_subject(address: str) -> None:
    subject = identify(address, None, RULES)
    assert subject is not None
    text = subject.model_dump_json()
    assert not contains_mac_address(text)
    assert address.replace(":", "").lower() not in text.lower()
