from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta

import pytest

from cloud_api.offers.codes import (
    CROCKFORD_ALPHABET,
    crockford,
    format_offer_code,
    new_app_key,
    new_offer_code,
    new_shopper_id,
    normalise_code,
    offer_expiry,
)
from storelink.tokens import APP_KEY_BYTES

CODE_RE = re.compile(
    r"^SL-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$"
)
RFC4648 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def test_crockford_matches_rfc4648_base32_with_the_crockford_alphabet() -> None:
    # Ten bytes are 80 bits: a whole number of base32 digits, so no padding is involved.
    for raw in (bytes(10), b"\xff" * 10, bytes(range(10)), b"storelink!"):
        expected = (
            base64.b32encode(raw).decode().translate(str.maketrans(RFC4648, CROCKFORD_ALPHABET))
        )
        assert crockford(raw) == expected


def test_crockford_pads_a_partial_last_digit_with_zero_bits() -> None:
    assert crockford(b"\x01") == "04"
    assert crockford(b"\xff") == "ZW"


def test_offer_codes_have_80_random_bits_in_readable_groups() -> None:
    codes = {new_offer_code() for _ in range(5000)}
    assert len(codes) == 5000
    assert all(CODE_RE.match(code) for code in codes)
    # Every position draws on the whole alphabet: no fixed or biased-to-constant digits.
    for position in (3, 8, 13, 18, 21):
        assert {code[position] for code in codes} == set(CROCKFORD_ALPHABET)


def test_format_offer_code_is_deterministic_in_its_bytes() -> None:
    assert format_offer_code(bytes(10)) == "SL-0000-0000-0000-0000"
    assert format_offer_code(b"\xff" * 10) == "SL-ZZZZ-ZZZZ-ZZZZ-ZZZZ"


@pytest.mark.parametrize(
    "typed",
    [
        "SL-7KQ2-M9XD-0A1B-CDEF",
        "sl-7kq2-m9xd-0a1b-cdef",
        "SL 7KQ2 M9XD 0A1B CDEF",
        "SL7KQ2M9XD0A1BCDEF",
        "7KQ2-M9XD-0A1B-CDEF",
        "SL-7KQ2-M9XD-OAIB-CDEF",
        "SL-7KQ2-M9XD-0alb-CDEF",
    ],
)
def test_normalise_code_undoes_how_people_type_codes(typed: str) -> None:
    assert normalise_code(typed) == "SL-7KQ2-M9XD-0A1B-CDEF"


def test_normalise_code_keeps_a_leading_s1_typed_as_sl_without_prefix() -> None:
    assert normalise_code("SLAB-CDEF-GHJK-MNPQ") == "SL-S1AB-CDEF-GHJK-MNPQ"


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "SL-",
        "SL-7KQ2-M9XD-0A1B",
        "SL-7KQ2-M9XD-0A1B-CDEFG",
        "SL-7KQ2-M9XD-0A1B-CDEU",
        "x" * 200,
    ],
)
def test_normalise_code_refuses_what_cannot_be_a_code(typed: str) -> None:
    assert normalise_code(typed) is None


def test_every_new_code_normalises_to_itself() -> None:
    for _ in range(200):
        code = new_offer_code()
        assert normalise_code(code) == code
        assert normalise_code(code.lower().replace("-", "")) == code


def test_offer_expiry_adds_the_ttl() -> None:
    issued = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    assert offer_expiry(issued, 7200) == issued + timedelta(hours=2)


def test_shopper_ids_are_unguessable_topic_safe_identifiers() -> None:
    ids = {new_shopper_id() for _ in range(2000)}
    assert len(ids) == 2000
    for shopper_id in ids:
        # 128 bits in 26 base32 digits, and a valid MQTT topic level and wire Identifier.
        assert re.fullmatch(r"shp_[0-9a-hjkmnp-tv-z]{26}", shopper_id)


def test_app_keys_are_random_and_of_the_token_key_size() -> None:
    keys = {new_app_key() for _ in range(100)}
    assert len(keys) == 100
    assert {len(key) for key in keys} == {APP_KEY_BYTES}
