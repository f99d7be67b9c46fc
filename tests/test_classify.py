from __future__ import annotations

from uuid import UUID

import pytest

from firmware_sim.frames import (
    advertisement,
    android_nearby_frame,
    fitness_band_frame,
    flags_ad,
    heart_rate_strap_frame,
    ibeacon_frame,
    manufacturer_ad,
    nearby_info_frame,
    service_data16_ad,
    uuid16_list_ad,
)
from gateway.classify import (
    DeviceClass,
    _member_uuid,
    classify,
    company_name,
    service_owner,
)
from gateway.decode import decode_advertisement
from gateway.decode.ad import AD_COMPLETE_LOCAL_NAME, AD_COMPLETE_UUID128


def uuid16(value: int) -> str:
    return f"0000{value:04x}-0000-1000-8000-00805f9b34fb"


def of(raw: bytes) -> tuple[DeviceClass, str | None]:
    decoded = decode_advertisement(raw)
    return decoded.device_class, decoded.manufacturer


def apple(*messages: bytes) -> bytes:
    return manufacturer_ad(0x004C, b"".join(messages))


# --- the SIG's assigned numbers -----------------------------------------------------------------


def test_company_names_come_from_the_sig_list() -> None:
    assert company_name(0x004C) == "Apple, Inc."
    assert company_name(0x0006) == "Microsoft"
    assert company_name(0x0157) == "Anhui Huami Information Technology Co., Ltd."
    assert company_name(0xFFFF) is None  # the SIG's "no vendor id"
    assert company_name(0xFFF0) is None  # not assigned


def test_member_uuid_owners_come_from_the_sig_list() -> None:
    assert service_owner(uuid16(0xFEE0)) == "Anhui Huami Information Technology Co., Ltd."
    assert service_owner(uuid16(0xFEAA)) == "Google LLC"
    assert service_owner(uuid16(0xFEEF)) == "Polar Electro Oy"
    assert service_owner(uuid16(0x180D)) is None  # a SIG service, no member's
    assert service_owner(uuid16(0x1234)) is None


def test_bluetooth_numbers_decimal_keys_are_read_back() -> None:
    assert _member_uuid(0x65236) == 0xFED4  # what bluetooth-numbers 1.1.2 writes for 65236
    assert _member_uuid(0xFED4) == 0xFED4
    assert _member_uuid(0x180D) is None
    assert _member_uuid(0x99999) is None  # 99999 is no 16-bit UUID
    assert _member_uuid("fed4") is None


# --- Apple Continuity ---------------------------------------------------------------------------


def test_an_iphone_is_a_phone_never_more() -> None:
    assert of(nearby_info_frame(b"abc")) == (DeviceClass.APPLE_PHONE, "Apple, Inc.")
    assert decode_advertisement(nearby_info_frame(b"abc")).frames == ()


def test_a_watch_tells_itself_apart() -> None:
    # Nearby Info action 0x0A: "watch on wrist and unlocked".
    assert of(nearby_info_frame(b"abc", action_code=0x0A))[0] is DeviceClass.APPLE_WATCH
    # Magic Switch (0x0B): a Watch that lost its iPhone.
    assert of(apple(bytes.fromhex("0b0301023f")))[0] is DeviceClass.APPLE_WATCH


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("0719" + "01" * 25, DeviceClass.APPLE_AUDIO),  # Proximity Pairing (AirPods)
        ("1219" + "00" * 25, DeviceClass.APPLE_FIND_MY),  # Find My (AirTag)
        ("0c0e" + "00" * 14, DeviceClass.APPLE_PHONE),  # Handoff
        ("0f05" + "00" * 5, DeviceClass.APPLE_PHONE),  # Nearby Action
        ("0e06" + "00" * 6, DeviceClass.APPLE_PHONE),  # Instant Hotspot
        ("0906" + "00" * 6, DeviceClass.APPLE),  # AirPlay target (an Apple TV)
        ("06" + "0d" + "00" * 13, DeviceClass.APPLE),  # HomeKit
        ("", DeviceClass.APPLE),
        ("10", DeviceClass.APPLE),  # truncated
        ("1005", DeviceClass.APPLE),  # a length and no body
    ],
)
def test_continuity_messages(message: str, expected: DeviceClass) -> None:
    assert of(apple(bytes.fromhex(message))) == (expected, "Apple, Inc.")


def test_the_most_telling_continuity_message_wins() -> None:
    nearby = bytes.fromhex("1005171c010203")
    handoff = bytes.fromhex("0c0e" + "00" * 14)
    watch = bytes.fromhex("10051a1c010203")
    assert of(apple(handoff, nearby))[0] is DeviceClass.APPLE_PHONE
    assert of(apple(nearby, bytes.fromhex("0b0301023f")))[0] is DeviceClass.APPLE_WATCH
    assert of(apple(handoff, watch))[0] is DeviceClass.APPLE_WATCH


def test_an_ibeacon_is_a_beacon_whoever_sends_it() -> None:
    assert of(ibeacon_frame(UUID(int=1), 1, 2, -59)) == (DeviceClass.BEACON, "Apple, Inc.")


# --- other vendors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected", "maker"),
    [
        (
            manufacturer_ad(0x0006, bytes.fromhex("0109 2002") + bytes(20)),
            "microsoft_cdp",
            "Microsoft",
        ),
        (manufacturer_ad(0x0006, bytes.fromhex("030080")), "microsoft", "Microsoft"),  # Swift Pair
        (
            advertisement(flags_ad(0x06), service_data16_ad(0xFE2C, bytes.fromhex("2aa5f1"))),
            "google_fast_pair",
            "Google LLC",
        ),
        (android_nearby_frame(b"nearby"), "google", "Google LLC"),
        (manufacturer_ad(0x0075, bytes.fromhex("4204018066")), "samsung", None),
        (manufacturer_ad(0x0087, bytes.fromhex("0102")), "garmin", "Garmin International, Inc."),
        (uuid16_list_ad([0xFE1F]), "garmin", "Garmin International, Inc."),
        (manufacturer_ad(0x018E, b"\x01"), "fitbit", "Fitbit, Inc."),
        (fitness_band_frame(b"\x01\x02\x03\x04\x05\x06"), "huami_xiaomi", None),
        (service_data16_ad(0xFE95, bytes(12)), "huami_xiaomi", "Xiaomi Inc."),
        (manufacturer_ad(0x006B, b"\x01\x02"), "polar", "Polar Electro OY"),
        (uuid16_list_ad([0x180D, 0xFEEE]), "polar", "Polar Electro Oy"),
        (heart_rate_strap_frame(), "heart_rate", None),
    ],
)
def test_vendor_classes(raw: bytes, expected: str, maker: str | None) -> None:
    device_class, manufacturer = of(raw)
    assert device_class == expected
    if maker is not None:
        assert manufacturer == maker


def test_fitbits_own_uuid() -> None:
    fitbit = UUID("adabfb00-6e7d-4601-bda2-bffaa68956ba").bytes[::-1]
    raw = bytes([len(fitbit) + 1, AD_COMPLETE_UUID128]) + fitbit
    assert of(raw) == (DeviceClass.FITBIT, None)


def test_a_vendors_strap_is_the_vendors_and_an_anonymous_strap_a_heart_rate_sensor() -> None:
    garmin_strap = heart_rate_strap_frame() + manufacturer_ad(0x0087, b"\x01")
    assert of(garmin_strap)[0] is DeviceClass.GARMIN
    assert of(heart_rate_strap_frame())[0] is DeviceClass.HEART_RATE
    # Google's Nearby data alongside a heart-rate service: the sensor says more.
    hr_and_nearby = uuid16_list_ad([0x180D]) + service_data16_ad(0xFEF3, b"\x01")
    assert of(hr_and_nearby)[0] is DeviceClass.HEART_RATE


# --- generic and unknown ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        bytes([7, AD_COMPLETE_LOCAL_NAME]) + b"Kettle",
        uuid16_list_ad([0x1812]),  # a keyboard: HID service
        manufacturer_ad(0x0118, b"\x01\x02"),  # a known company, nothing we read
        bytes([17, AD_COMPLETE_UUID128]) + bytes(range(16)),
    ],
)
def test_something_unrecognised_is_generic(raw: bytes) -> None:
    assert of(raw)[0] is DeviceClass.GENERIC


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        flags_ad(0x06),
        manufacturer_ad(0xFFFF, b"\x01\x02"),
        manufacturer_ad(0xFFF0, b"\x01"),
        b"\x00\x00\xff",
        b"\x05\xff\x4c",
    ],
)
def test_nothing_recognisable_is_unknown(raw: bytes) -> None:
    assert of(raw) == (DeviceClass.UNKNOWN, None)


def test_classify_takes_bleaks_fields_directly() -> None:
    assert classify({0x004C: bytes.fromhex("100517 1c010203")}, {}, []) == (
        DeviceClass.APPLE_PHONE,
        "Apple, Inc.",
    )
    assert classify({}, {}, [], local_name="x") == (DeviceClass.GENERIC, None)
    assert classify({}, {}, [uuid16(0x180D).upper()]) == (DeviceClass.HEART_RATE, None)
