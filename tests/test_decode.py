from __future__ import annotations

from uuid import UUID

from bluetooth_data_tools import parse_advertisement_data_bytes
from hypothesis import given
from hypothesis import strategies as st

from firmware_sim.frames import ibeacon_frame, nearby_info_frame
from gateway.decode import APPLE_COMPANY_ID, IBeacon, decode_ibeacon


def manufacturer_data(frame: bytes) -> dict[int, bytes]:
    return dict(parse_advertisement_data_bytes(frame)[3])


def test_decodes_the_published_vector() -> None:
    frame = bytes.fromhex("0201061aff4c000215e2c56db5dffb48d2b060d0f5a71096e000010002c5")
    assert decode_ibeacon(manufacturer_data(frame)) == IBeacon(
        uuid="e2c56db5-dffb-48d2-b060-d0f5a71096e0", major=1, minor=2, measured_power=-59
    )


@given(
    uuid=st.uuids(),
    major=st.integers(0, 0xFFFF),
    minor=st.integers(0, 0xFFFF),
    power=st.integers(-128, 127),
)
def test_round_trips_every_ibeacon(uuid: UUID, major: int, minor: int, power: int) -> None:
    beacon = decode_ibeacon(manufacturer_data(ibeacon_frame(uuid, major, minor, power)))
    assert beacon == IBeacon(str(uuid), major, minor, power)


def test_beacon_id_is_the_settings_form() -> None:
    beacon = IBeacon("e2c56db5-dffb-48d2-b060-d0f5a71096e0", 1, 2, -59)
    assert beacon.beacon_id == "e2c56db5-dffb-48d2-b060-d0f5a71096e0:1:2"


def test_other_frames_are_not_ibeacons() -> None:
    ibeacon = manufacturer_data(ibeacon_frame(UUID(int=1), 1, 2, -59))[APPLE_COMPANY_ID]
    assert decode_ibeacon({}) is None
    assert decode_ibeacon(manufacturer_data(nearby_info_frame(b"\x01\x02\x03"))) is None
    # The same bytes from another company (here Microsoft) are not Apple's iBeacon.
    assert decode_ibeacon({0x0006: ibeacon}) is None
    assert decode_ibeacon({APPLE_COMPANY_ID: ibeacon[:-1]}) is None
    assert decode_ibeacon({APPLE_COMPANY_ID: ibeacon + b"\x00"}) is None


@given(st.dictionaries(st.integers(0, 0xFFFF), st.binary(max_size=40)))
def test_arbitrary_manufacturer_data_never_raises(data: dict[int, bytes]) -> None:
    result = decode_ibeacon(data)
    assert result is None or isinstance(result, IBeacon)


@given(st.binary(min_size=21, max_size=21))
def test_any_ibeacon_body_decodes_in_range(body: bytes) -> None:
    beacon = decode_ibeacon({APPLE_COMPANY_ID: b"\x02\x15" + body})
    assert beacon is not None
    assert UUID(beacon.uuid).bytes == body[:16]
    assert beacon.uuid == beacon.uuid.lower()
    assert 0 <= beacon.major <= 0xFFFF and 0 <= beacon.minor <= 0xFFFF
    assert -128 <= beacon.measured_power <= 127


@given(st.binary(max_size=64))
def test_arbitrary_air_bytes_never_raise(raw: bytes) -> None:
    result = decode_ibeacon(manufacturer_data(raw))
    assert result is None or isinstance(result, IBeacon)
