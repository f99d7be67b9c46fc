"""Decoding is total: whatever the radio hands over, a result and never an exception."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.classify import DeviceClass
from gateway.decode import Decoded, Decoder, decode_advertisement, decode_eddystone, decode_fields
from gateway.decode.ad import canonical_ad_bytes, parse_ad

APP_UUID = "5f2dd896-b886-4549-ae01-e41acd7a354a"
# AD types the decoder reads, and a few it does not, to build plausible structures from.
AD_TYPES = [0x01, 0x02, 0x03, 0x05, 0x07, 0x08, 0x09, 0x0A, 0x16, 0x19, 0x20, 0x21, 0xFF, 0x00]
COMPANIES = [0x004C, 0x0006, 0x0075, 0x0087, 0x0157, 0x006B, 0x018E, 0x0118, 0xFFFF, 0x1234]
SERVICE16 = [0xFEAA, 0xFE2C, 0x180D, 0xFEE0, 0xFEF3, 0xFD5A, 0x1234]


def check(decoded: Decoded) -> None:
    assert isinstance(decoded, Decoded)
    assert isinstance(decoded.device_class, DeviceClass)
    text = json.dumps(decoded.to_json())  # always JSON-serialisable
    assert json.loads(text)["device_class"] == decoded.device_class.value


@given(st.binary(max_size=80))
@settings(max_examples=500)
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    check(decode_advertisement(raw, app_uuid=APP_UUID))


ad_structure = st.builds(
    lambda ad_type, data: bytes([len(data) + 1, ad_type]) + data,
    st.sampled_from(AD_TYPES),
    st.binary(max_size=30),
)
# Manufacturer data and 16-bit service data under the identifiers the rules look at.
manufacturer = st.builds(
    lambda company, data: bytes([len(data) + 3, 0xFF]) + company.to_bytes(2, "little") + data,
    st.sampled_from(COMPANIES),
    st.one_of(
        st.binary(max_size=27),
        st.binary(max_size=25).map(lambda b: b"\x02\x15" + b),
        st.binary(max_size=25).map(lambda b: b"\xbe\xac" + b),
        st.binary(max_size=25).map(lambda b: b"\x10" + b),
    ),
)
service = st.builds(
    lambda uuid, data: bytes([len(data) + 3, 0x16]) + uuid.to_bytes(2, "little") + data,
    st.sampled_from(SERVICE16),
    st.one_of(
        st.binary(max_size=27),
        st.builds(
            lambda kind, body: bytes([kind]) + body,
            st.sampled_from([0x00, 0x10, 0x20, 0x30]),
            st.binary(max_size=22),
        ),
    ),
)


@given(st.lists(st.one_of(ad_structure, manufacturer, service), max_size=6))
@settings(max_examples=500)
def test_plausible_structures_with_random_payloads_never_raise(parts: list[bytes]) -> None:
    check(decode_advertisement(b"".join(parts), app_uuid=APP_UUID))


@given(st.binary(max_size=40))
def test_any_eddystone_service_data_never_raises(data: bytes) -> None:
    frame = decode_eddystone(data)
    assert frame is None or frame.to_json()["format"].startswith("eddystone_")


@given(
    st.dictionaries(st.integers(0, 0xFFFF), st.binary(max_size=40), max_size=4),
    st.dictionaries(
        st.sampled_from([f"0000{u:04x}-0000-1000-8000-00805f9b34fb" for u in SERVICE16]),
        st.binary(max_size=30),
        max_size=3,
    ),
    st.lists(st.uuids().map(str), max_size=3),
    st.one_of(st.none(), st.text(max_size=10)),
)
def test_arbitrary_fields_never_raise(
    manufacturer_data: dict[int, bytes],
    service_data: dict[str, bytes],
    service_uuids: list[str],
    local_name: str | None,
) -> None:
    check(
        decode_fields(
            manufacturer_data, service_data, service_uuids, local_name=local_name, app_uuid=APP_UUID
        )
    )


@given(st.binary(max_size=62))
def test_fields_rebuilt_as_bytes_parse_back_the_same(raw: bytes) -> None:
    fields = parse_ad(raw)
    name, uuids, service_data, manufacturer_data, tx_power = fields
    if name is not None and "\ufffd" in name:
        return  # an invalid UTF-8 name was already replaced when parsed
    rebuilt = canonical_ad_bytes(name, uuids, service_data, manufacturer_data, tx_power)
    again = parse_ad(rebuilt)
    assert again[0] == name
    assert sorted(again[1]) == sorted(uuids)
    assert again[2] == service_data
    assert again[3] == manufacturer_data
    assert again[4] == tx_power
    # ... and so they decode the same.
    assert decode_advertisement(rebuilt) == decode_advertisement(raw)


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=50))
def test_the_cached_decoder_agrees_and_stays_bounded(raws: list[bytes]) -> None:
    decoder = Decoder(APP_UUID, cache_size=8)
    for raw in raws + raws:
        assert decoder.decode(raw) == decode_advertisement(raw, app_uuid=APP_UUID)
        assert len(decoder) <= 8
