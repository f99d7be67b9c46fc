"""Each frame format, from the vectors of its specification and from the simulator's builders."""

from __future__ import annotations

from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_sim import eddystone
from firmware_sim.frames import (
    advertisement,
    flags_ad,
    ibeacon_frame,
    manufacturer_ad,
    service_data16_ad,
    uuid16_list_ad,
)
from gateway.decode import (
    AltBeacon,
    AppToken,
    DeviceClass,
    EddystoneEID,
    EddystoneETLM,
    EddystoneTLM,
    EddystoneUID,
    EddystoneURL,
    IBeacon,
    decode_advertisement,
    decode_eddystone,
    decode_url,
)

APP_UUID = "5f2dd896-b886-4549-ae01-e41acd7a354a"
EDDYSTONE = 0xFEAA
TLDS = (".com", ".org", ".edu", ".net", ".info", ".biz", ".gov")


def eddystone_frame(service_data: bytes) -> bytes:
    """Flags, the 0xFEAA service UUID list and Eddystone service data, as beacons send them."""
    return advertisement(
        flags_ad(0x06),
        uuid16_list_ad([EDDYSTONE]),
        service_data16_ad(EDDYSTONE, service_data),
    )


# --- iBeacon ------------------------------------------------------------------------------------


def test_ibeacon_published_vector() -> None:
    # Apple's AirLocate sample UUID, major 1, minor 2, -59 dBm at 1 m.
    raw = bytes.fromhex("0201061aff4c000215e2c56db5dffb48d2b060d0f5a71096e000010002c5")
    decoded = decode_advertisement(raw)
    assert decoded.frames == (IBeacon("e2c56db5-dffb-48d2-b060-d0f5a71096e0", 1, 2, -59),)
    assert decoded.device_class is DeviceClass.BEACON
    assert decoded.manufacturer == "Apple, Inc."
    assert decoded.measured_power == -59
    assert decoded.beacon_id == "e2c56db5-dffb-48d2-b060-d0f5a71096e0:1:2"
    assert decoded.to_json()["frames"] == [
        {
            "format": "ibeacon",
            "uuid": "e2c56db5-dffb-48d2-b060-d0f5a71096e0",
            "major": 1,
            "minor": 2,
            "tx_power": -59,
        }
    ]


def test_the_shopper_apps_ibeacon_is_its_token() -> None:
    # The protocol's test vector: token 0x104de62a, major 4173, minor 58922.
    raw = ibeacon_frame(UUID(APP_UUID), 4173, 58922, -59)
    [frame] = decode_advertisement(raw, app_uuid=APP_UUID.upper()).frames
    assert frame == AppToken(APP_UUID, 4173, 58922, -59)
    assert frame.ref == "104de62a"
    assert frame.to_json() == {
        "format": "app_token",
        "uuid": APP_UUID,
        "major": 4173,
        "minor": 58922,
        "tx_power": -59,
        "ref": "104de62a",
    }
    # Without the app UUID it is just an iBeacon, and no beacon id is an app token's.
    assert decode_advertisement(raw).frames == (IBeacon(APP_UUID, 4173, 58922, -59),)
    assert decode_advertisement(raw, app_uuid=APP_UUID).beacon_id is None


# --- AltBeacon ----------------------------------------------------------------------------------


def test_altbeacon_per_the_specification() -> None:
    # 1B FF, company 0x0118 (Radius Networks) little-endian, BE AC, a 20-byte id (UUID, 1, 2),
    # reference RSSI -59, manufacturer reserved 0x00.
    raw = bytes.fromhex("0201061bff1801beac2f234454cf6d4a0fadf2f4911ba9ffa600010002c500")
    decoded = decode_advertisement(raw)
    [frame] = decoded.frames
    assert frame == AltBeacon(0x0118, "2f234454cf6d4a0fadf2f4911ba9ffa600010002", -59, 0)
    assert (frame.uuid, frame.major, frame.minor) == ("2f234454-cf6d-4a0f-adf2-f4911ba9ffa6", 1, 2)
    assert decoded.device_class is DeviceClass.BEACON
    assert decoded.manufacturer == "Radius Networks, Inc."
    assert decoded.measured_power == -59
    assert decoded.beacon_id == "2f234454-cf6d-4a0f-adf2-f4911ba9ffa6:1:2"
    assert frame.to_json()["format"] == "altbeacon"
    assert frame.to_json()["tx_power"] == -59


def test_altbeacon_needs_its_code_and_length() -> None:
    body = bytes.fromhex("beac") + bytes(20) + b"\xc5\x00"
    assert decode_advertisement(manufacturer_ad(0x0118, body)).frames
    assert not decode_advertisement(manufacturer_ad(0x0118, b"\xbe\xad" + body[2:])).frames
    assert not decode_advertisement(manufacturer_ad(0x0118, body[:-1])).frames
    assert not decode_advertisement(manufacturer_ad(0x0118, body + b"\x00")).frames


# --- Eddystone-UID ------------------------------------------------------------------------------


def test_eddystone_uid_per_the_specification() -> None:
    # Service data length 0x17; the namespace is the spec's elided-UUID example; TX -18 dBm.
    raw = bytes.fromhex("0201060303aafe1716aafe00ee8b0ca750095477cb3e770000000000010000")
    decoded = decode_advertisement(raw)
    assert decoded.frames == (EddystoneUID("8b0ca750095477cb3e77", "000000000001", -18),)
    assert decoded.device_class is DeviceClass.BEACON
    assert decoded.beacon_id == "8b0ca750095477cb3e77:000000000001"
    assert decoded.measured_power == -18 - 41  # 0 m power less the spec's 41 dB over 1 m
    assert decoded.to_json()["frames"] == [
        {
            "format": "eddystone_uid",
            "namespace": "8b0ca750095477cb3e77",
            "instance": "000000000001",
            "tx_power": -18,
        }
    ]


def test_eddystone_uid_without_the_reserved_bytes_and_with_bad_ones() -> None:
    body = bytes.fromhex("0012") + bytes(range(16))
    assert decode_eddystone(body) == EddystoneUID(bytes(range(10)).hex(), "0a0b0c0d0e0f", 18)
    assert decode_eddystone(body + b"\0\0") == decode_eddystone(body)
    assert decode_eddystone(body + b"\0\1") is None  # reserved bytes must be zero
    assert decode_eddystone(body[:-1]) is None


@given(
    st.binary(min_size=10, max_size=10), st.binary(min_size=6, max_size=6), st.integers(-100, 20)
)
def test_eddystone_uid_round_trips(namespace: bytes, instance: bytes, tx_power: int) -> None:
    frames = decode_advertisement(eddystone.uid_frame(namespace, instance, tx_power)).frames
    assert frames == (EddystoneUID(namespace.hex(), instance.hex(), tx_power),)


# --- Eddystone-URL ------------------------------------------------------------------------------


def test_eddystone_url_with_expansion_codes() -> None:
    # https://www. is scheme 0x01 and ".com/" is expansion 0x00: 01 "google" 00.
    raw = bytes.fromhex("0201060303aafe0d16aafe10ee01676f6f676c6500")
    decoded = decode_advertisement(raw)
    assert decoded.frames == (EddystoneURL("https://www.google.com/", -18),)
    assert decoded.to_json()["frames"] == [
        {"format": "eddystone_url", "url": "https://www.google.com/", "tx_power": -18}
    ]


def test_the_specifications_example_url() -> None:
    # https:// is 0x03; goo.gl has no expansion; TX power 0x12 is +18 dBm.
    body = bytes.fromhex("1012") + b"\x03" + b"goo.gl/Aq18zF"
    assert decode_eddystone(body) == EddystoneURL("https://goo.gl/Aq18zF", 18)


@pytest.mark.parametrize(
    ("code", "text"),
    # The spec's table: 0x00-0x06 end in a slash, 0x07-0x0D are the same without.
    [(code, tld + "/") for code, tld in enumerate(TLDS)]
    + [(code + len(TLDS), tld) for code, tld in enumerate(TLDS)],
)
def test_every_expansion_code(code: int, text: str) -> None:
    assert decode_url(2, b"shop" + bytes([code]) + b"x") == f"http://shop{text}x"


@pytest.mark.parametrize(
    ("scheme", "prefix"),
    [(0, "http://www."), (1, "https://www."), (2, "http://"), (3, "https://")],
)
def test_every_scheme(scheme: int, prefix: str) -> None:
    assert decode_url(scheme, b"a.b") == f"{prefix}a.b"


@pytest.mark.parametrize("byte", [0x0E, 0x20, 0x7F, 0x80, 0xFF])
def test_reserved_url_bytes_are_refused(byte: int) -> None:
    assert decode_url(3, b"ab" + bytes([byte])) is None


def test_bad_schemes_and_lengths_are_refused() -> None:
    assert decode_url(4, b"a") is None
    assert decode_url(3, b"a" * 17) == "https://" + "a" * 17
    assert decode_url(3, b"a" * 18) is None
    assert decode_eddystone(bytes.fromhex("10ee")) is None
    assert decode_eddystone(bytes.fromhex("10ee03")) == EddystoneURL("https://", -18)


@given(
    st.sampled_from(["http://www.", "https://www.", "http://", "https://"]),
    st.text(alphabet="abcxyz0123-./?#=_~", min_size=1, max_size=12),
    st.sampled_from(["", ".com/", ".org", ".info/", ".gov"]),
)
def test_eddystone_url_round_trips(scheme: str, host: str, suffix: str) -> None:
    url = scheme + host + suffix
    frames = decode_advertisement(eddystone.url_frame(url, -20)).frames
    assert frames == (EddystoneURL(url, -20),)


# --- Eddystone-TLM ------------------------------------------------------------------------------


def test_eddystone_tlm_per_the_specification() -> None:
    # Service data length 0x11; version 0; 3000 mV; 21.5 °C is 0x1580 in 8.8 fixed point;
    # 1000 PDUs; 36000 ticks of 0.1 s is an hour.
    raw = bytes.fromhex("0201060303aafe1116aafe20000bb81580000003e800008ca0")
    decoded = decode_advertisement(raw)
    assert decoded.frames == (EddystoneTLM(3000, 21.5, 1000, 3600.0),)
    assert decoded.device_class is DeviceClass.BEACON
    assert decoded.measured_power is None  # telemetry says nothing of range
    assert decoded.to_json()["frames"] == [
        {
            "format": "eddystone_tlm",
            "battery_mv": 3000,
            "temperature_c": 21.5,
            "adv_count": 1000,
            "uptime_s": 3600.0,
        }
    ]


def test_tlm_negative_temperature_and_unsupported_fields() -> None:
    # -1.25 °C is 0xFEC0; 0x8000 means no sensor; a battery of 0 means not measured.
    assert decode_eddystone(bytes.fromhex("20000bb8fec00000000100000001")) == (
        EddystoneTLM(3000, -1.25, 1, 0.1)
    )
    assert decode_eddystone(bytes.fromhex("200000008000ffffffffffffffff")) == (
        EddystoneTLM(None, None, 0xFFFFFFFF, 0xFFFFFFFF / 10)
    )


def test_tlm_of_another_version_or_length_is_not_read() -> None:
    frame = bytes.fromhex("20000bb81580000003e800008ca0")
    assert decode_eddystone(frame[:-1]) is None
    assert decode_eddystone(frame + b"\0") is None
    assert decode_eddystone(b"\x20\x02" + frame[2:]) is None


@given(
    st.integers(1, 0xFFFF),
    st.integers(-127 * 256, 127 * 256).map(lambda t: t / 256),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF),
)
def test_eddystone_tlm_round_trips(
    battery: int, temperature: float, count: int, ticks: int
) -> None:
    raw = eddystone.tlm_frame(battery, temperature, count, ticks / 10)
    [frame] = decode_advertisement(raw).frames
    assert isinstance(frame, EddystoneTLM)
    assert (frame.battery_mv, frame.temperature_c, frame.adv_count) == (
        battery,
        temperature,
        count,
    )
    # The builder truncates to whole ticks; tenths of a second as a float can land one below.
    assert frame.uptime_s in (ticks / 10, (ticks - 1) / 10)


def test_encrypted_tlm_is_forwarded_opaque() -> None:
    body = bytes.fromhex("2001") + bytes(range(12)) + bytes.fromhex("abcd1234")
    raw = eddystone_frame(body)
    [frame] = decode_advertisement(raw).frames
    assert frame == EddystoneETLM(bytes(range(12)).hex(), "abcd", "1234")
    assert frame.to_json() == {
        "format": "eddystone_etlm",
        "etlm": "000102030405060708090a0b",
        "salt": "abcd",
        "mic": "1234",
    }


# --- Eddystone-EID ------------------------------------------------------------------------------


def test_eddystone_eid_is_forwarded_opaque() -> None:
    raw = eddystone_frame(bytes.fromhex("30f80102030405060708"))
    decoded = decode_advertisement(raw)
    assert decoded.frames == (EddystoneEID("0102030405060708", -8),)
    assert decoded.beacon_id is None  # an ephemeral id names nobody to the gateway
    assert decoded.to_json()["frames"] == [
        {"format": "eddystone_eid", "eid": "0102030405060708", "tx_power": -8}
    ]
    assert decode_eddystone(bytes.fromhex("30f801020304050607")) is None


def test_unknown_eddystone_frame_types_decode_to_nothing() -> None:
    for frame_type in (0x40, 0x50, 0xFF):
        decoded = decode_advertisement(eddystone_frame(bytes([frame_type]) + bytes(10)))
        assert decoded.frames == ()
        assert decoded.device_class is DeviceClass.GOOGLE  # 0xFEAA is Google's member UUID
    assert decode_eddystone(b"") is None


# --- several frames -----------------------------------------------------------------------------


def test_an_advertisement_with_several_frames_lists_them_all() -> None:
    raw = (
        manufacturer_ad(0x004C, ibeacon_frame(UUID(int=7), 1, 2, -60)[7:])
        + manufacturer_ad(0x0118, bytes.fromhex("beac") + bytes(20) + b"\xc4\x00")
        + service_data16_ad(EDDYSTONE, bytes.fromhex("00ee") + bytes(16))
    )
    decoded = decode_advertisement(raw)
    assert [frame.format for frame in decoded.frames] == ["ibeacon", "altbeacon", "eddystone_uid"]
    assert decoded.measured_power == -60
    assert decoded.beacon_id == f"{UUID(int=7)}:1:2"
