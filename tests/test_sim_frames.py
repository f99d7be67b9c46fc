"""Byte-exact frames and addresses, checked against the specifications that define them."""

from __future__ import annotations

import pytest
from bluetooth_data_tools import (
    get_cipher_for_irk,
    parse_advertisement_data_bytes,
    resolve_private_address,
)

from firmware_sim import eddystone
from firmware_sim.addresses import (
    AddressType,
    RotatingAddress,
    address_type,
    ah,
    non_resolvable_private_address,
    resolvable_private_address,
    static_random_address,
)
from firmware_sim.frames import (
    android_nearby_frame,
    fitness_band_frame,
    heart_rate_strap_frame,
)

EDDYSTONE_UUID = "0000feaa-0000-1000-8000-00805f9b34fb"
# The namespace the Eddystone-UID spec derives from a UUID, as its own example.
NAMESPACE = bytes.fromhex("8b0ca750095477cb3e77")
INSTANCE = bytes.fromhex("000000000001")


def test_eddystone_uid_follows_the_spec_layout() -> None:
    frame = eddystone.uid_frame(NAMESPACE, INSTANCE, tx_power_0m=-18)
    assert frame.hex() == (
        "020106"  # flags: LE general discoverable, no BR/EDR
        "0303aafe"  # complete list of 16-bit service UUIDs: 0xFEAA
        "1716aafe"  # service data for 0xFEAA, length byte 0x17 as the spec demands
        "00ee"  # frame type UID, ranging data -18 dBm
        "8b0ca750095477cb3e77"
        "000000000001"
        "0000"  # reserved
    )
    assert len(frame) == 31  # the whole legacy advertisement, as the spec notes
    _, uuids, service_data, manufacturer_data, _ = parse_advertisement_data_bytes(frame)
    assert list(uuids) == [EDDYSTONE_UUID]
    assert service_data == {EDDYSTONE_UUID: frame[11:]}
    assert manufacturer_data == {}


def test_eddystone_url_uses_the_scheme_and_expansion_codes() -> None:
    frame = eddystone.url_frame("https://goo.gl/S6zT6P", tx_power_0m=-20)
    service_data = frame[11:]
    assert frame[7] == len(service_data) + 3  # type byte and UUID counted in the length
    assert service_data == bytes([0x10, 0xEC, 0x03]) + b"goo.gl/S6zT6P"
    assert eddystone.encode_url("http://www.example.com/") == b"\x00example\x00"
    assert eddystone.encode_url("https://example.org") == b"\x03example\x08"
    with pytest.raises(ValueError, match="starts with"):
        eddystone.encode_url("ftp://example.com")
    with pytest.raises(ValueError, match="17 bytes"):
        eddystone.encode_url("https://a-very-long-name.example/x")


def test_eddystone_tlm_is_big_endian_with_fixed_point_temperature() -> None:
    frame = eddystone.tlm_frame(battery_mv=3000, temperature_c=21.5, adv_count=1000, uptime_s=3600)
    assert frame[7] == 0x11  # the spec's fixed service data length
    assert frame[11:].hex() == (
        "2000"  # TLM, version 0
        "0bb8"  # 3000 mV
        "1580"  # 21.5 degrees in 8.8 fixed point
        "000003e8"  # 1000 advertising PDUs
        "00008ca0"  # 3600 s in tenths
    )
    cold = eddystone.tlm_frame(battery_mv=0, temperature_c=-1.5, adv_count=2**32 + 5, uptime_s=0)
    assert cold[15:17].hex() == "fe80"
    assert cold[17:21] == (5).to_bytes(4, "big")  # counters wrap like a beacon's


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"battery_mv": -1, "temperature_c": 0.0}, "battery"),
        ({"battery_mv": 3000, "temperature_c": 200.0}, "temperature"),
    ],
)
def test_eddystone_tlm_refuses_out_of_range_values(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        eddystone.tlm_frame(adv_count=0, uptime_s=0, **kwargs)  # type: ignore[arg-type]


def test_eddystone_uid_checks_its_fields() -> None:
    with pytest.raises(ValueError, match="10-byte namespace"):
        eddystone.uid_frame(NAMESPACE[:9], INSTANCE, -18)
    with pytest.raises(ValueError, match="TX power"):
        eddystone.uid_frame(NAMESPACE, INSTANCE, 30)


def test_resolvable_private_address_matches_the_core_spec_vector() -> None:
    # Bluetooth Core Specification, Vol 3, Part H, Appendix D.7: ah(IRK, prand).
    irk = bytes.fromhex("ec0234a357c8ad05341010a60a397d9b")
    assert ah(irk, bytes.fromhex("708194")).hex() == "0dfbaa"
    address = resolvable_private_address(irk, bytes.fromhex("708194"))
    assert address == "70:81:94:0D:FB:AA"
    assert resolve_private_address(get_cipher_for_irk(irk), address)
    assert not resolve_private_address(get_cipher_for_irk(bytes(16)), address)


def test_address_types_are_marked_by_their_top_bits() -> None:
    rpa = resolvable_private_address(bytes(16), b"\xff\xff\xff")
    assert address_type(rpa) is AddressType.RPA
    assert address_type(non_resolvable_private_address(b"\xff" * 6)) is AddressType.NRPA
    assert address_type(static_random_address(b"\x00" * 6)) is AddressType.STATIC
    # An NRPA's random part is neither all zeros nor all ones.
    assert non_resolvable_private_address(bytes(6)) != "00:00:00:00:00:00"


def test_rotating_addresses_change_every_period_and_resolve_with_their_irk() -> None:
    irk = bytes(range(16))
    rotating = RotatingAddress("dev", AddressType.RPA, period_s=900, phase_s=100, irk=irk)
    assert rotating.at(100) == rotating.at(999.9)
    assert rotating.at(999.9) != rotating.at(1000)
    assert rotating.during(50, 1100) == [rotating.at(50), rotating.at(500), rotating.at(1050)]
    cipher = get_cipher_for_irk(irk)
    assert all(resolve_private_address(cipher, a) for a in rotating.during(0, 10_000))
    nrpa = RotatingAddress("dev", AddressType.NRPA, period_s=900)
    assert address_type(nrpa.at(0)) is AddressType.NRPA
    with pytest.raises(ValueError, match="IRK"):
        RotatingAddress("dev", AddressType.RPA)


def test_wearable_and_android_frames_parse_as_their_services() -> None:
    _, uuids, _, _, tx_power = parse_advertisement_data_bytes(heart_rate_strap_frame(-4))
    assert list(uuids) == [
        "0000180d-0000-1000-8000-00805f9b34fb",  # Heart Rate
        "0000180f-0000-1000-8000-00805f9b34fb",  # Battery
    ]
    assert tx_power == -4
    band = fitness_band_frame(bytes(range(6)))
    _, uuids, _, manufacturer_data, _ = parse_advertisement_data_bytes(band)
    assert list(uuids) == ["0000fee0-0000-1000-8000-00805f9b34fb"]
    assert manufacturer_data == {0x0157: bytes(range(6))}
    android = android_nearby_frame(b"\x01\x02\x03")
    _, _, service_data, _, _ = parse_advertisement_data_bytes(android)
    assert service_data == {"0000fef3-0000-1000-8000-00805f9b34fb": b"\x01\x02\x03"}
