from __future__ import annotations

from uuid import UUID

import pytest
from bluetooth_data_tools import parse_advertisement_data_bytes
from hypothesis import given
from hypothesis import strategies as st

from firmware_sim.frames import APPLE_COMPANY_ID, ibeacon_frame, nearby_info_frame


def test_ibeacon_frame_matches_the_published_vector() -> None:
    frame = ibeacon_frame(UUID("E2C56DB5-DFFB-48D2-B060-D0F5A71096E0"), 1, 2, -59)
    assert frame.hex() == "0201061aff4c000215e2c56db5dffb48d2b060d0f5a71096e000010002c5"


@given(
    uuid=st.uuids(),
    major=st.integers(0, 0xFFFF),
    minor=st.integers(0, 0xFFFF),
    power=st.integers(-128, 127),
)
def test_ibeacon_frame_follows_apples_layout(
    uuid: UUID, major: int, minor: int, power: int
) -> None:
    frame = ibeacon_frame(uuid, major, minor, power)
    assert len(frame) == 30
    assert frame[:3] == bytes.fromhex("020106")  # flags: LE general discoverable, no BR/EDR
    assert frame[3:9] == bytes.fromhex("1aff4c000215")  # 26-byte AD, Apple, iBeacon, 21 bytes
    assert frame[9:25] == uuid.bytes
    assert int.from_bytes(frame[25:27], "big") == major
    assert int.from_bytes(frame[27:29], "big") == minor
    assert int.from_bytes(frame[29:30], "big", signed=True) == power


def test_ibeacon_frame_parses_as_apple_manufacturer_data() -> None:
    frame = ibeacon_frame(UUID(int=7), 10, 20, -60)
    name, uuids, service_data, manufacturer_data, tx_power = parse_advertisement_data_bytes(frame)
    assert manufacturer_data == {APPLE_COMPANY_ID: frame[7:]}
    assert (name, uuids, service_data, tx_power) == (None, [], {}, None)


@pytest.mark.parametrize(
    ("major", "minor", "power"), [(0x10000, 0, -59), (0, -1, -59), (0, 0, -129), (0, 0, 128)]
)
def test_ibeacon_frame_refuses_values_that_do_not_fit(major: int, minor: int, power: int) -> None:
    with pytest.raises(ValueError, match="fit"):
        ibeacon_frame(UUID(int=0), major, minor, power)


def test_nearby_info_frame_is_apple_continuity_type_0x10() -> None:
    frame = nearby_info_frame(b"\xaa\xbb\xcc")
    assert frame.hex() == "02011a" + "0aff4c00" + "1005171c" + "aabbcc"
    _, _, _, manufacturer_data, _ = parse_advertisement_data_bytes(frame)
    assert manufacturer_data == {APPLE_COMPANY_ID: bytes.fromhex("1005171caabbcc")}


def test_nearby_info_frame_checks_its_fields() -> None:
    with pytest.raises(ValueError, match="3 bytes"):
        nearby_info_frame(b"\x01\x02")
    with pytest.raises(ValueError, match="nibble"):
        nearby_info_frame(b"\x01\x02\x03", action_code=0x10)
