"""Passive scanning on BlueZ: the or-patterns hear every frame the gateway decodes."""

from __future__ import annotations

from uuid import UUID

import pytest
from bleak.args.bluez import OrPatternLike
from bleak.backends.bluezdbus.scanner import BleakScannerBlueZDBus
from bleak.exc import BleakError

from firmware_sim import eddystone, frames
from gateway.config import GatewaySettings
from gateway.passive import passive_or_patterns, scanner_kwargs

FLAGS = 0x01


def structures(raw: bytes) -> list[tuple[int, bytes]]:
    """(AD type, data) of each AD structure, as BlueZ's advertisement monitor walks them."""
    found, i = [], 0
    while i < len(raw) and raw[i]:
        length = raw[i]
        found.append((raw[i + 1], raw[i + 2 : i + 1 + length]))
        i += 1 + length
    return found


def reported(patterns: list[OrPatternLike], raw: bytes) -> bool:
    """BlueZ's or-pattern rule: some structure of the pattern's type holds its bytes at offset."""
    return any(
        ad_type == pattern[1] and data[pattern[0] : pattern[0] + len(pattern[2])] == pattern[2]
        for pattern in patterns
        for ad_type, data in structures(raw)
    )


def without_flags(raw: bytes) -> bytes:
    return frames.advertisement(
        *(frames.ad_structure(t, d) for t, d in structures(raw) if t != FLAGS)
    )


FRAMES = {
    "ibeacon": frames.ibeacon_frame(UUID(int=1), 1, 2, -59),
    "altbeacon": frames.advertisement(
        frames.manufacturer_ad(0x0118, b"\xbe\xac" + bytes(20) + b"\xc5\x00")
    ),
    "eddystone_uid": eddystone.uid_frame(bytes(10), bytes(6), -20),
    "eddystone_url": eddystone.url_frame("https://example.com", -20),
    "eddystone_tlm": eddystone.tlm_frame(3000, 21.5, 10, 60.0),
    "iphone_nearby_info": frames.nearby_info_frame(b"\x01\x02\x03"),
    "heart_rate_strap": frames.heart_rate_strap_frame(),
    "fitness_band": frames.fitness_band_frame(b"\x01\x02\x03\x04\x05\x06"),
    "android_nearby": frames.android_nearby_frame(b"\x00" * 6),
}


@pytest.mark.parametrize("raw", FRAMES.values(), ids=FRAMES.keys())
def test_every_decoded_frame_is_reported_even_without_flags(raw: bytes) -> None:
    patterns = passive_or_patterns()
    assert reported(patterns, raw)
    assert reported(patterns, without_flags(raw))


def test_a_flagless_advert_of_no_known_kind_is_not_reported() -> None:
    nameless = frames.advertisement(frames.ad_structure(0x09, b"printer"))
    assert not reported(passive_or_patterns(), nameless)


def test_passive_settings_give_bluez_its_patterns_and_adapter() -> None:
    passive = scanner_kwargs(GatewaySettings(scanning_mode="passive", adapter="hci1"), {"extra": 1})
    assert passive["extra"] == 1
    assert passive["bluez"]["adapter"] == "hci1"
    assert passive["bluez"]["or_patterns"] == passive_or_patterns()
    # bleak's BlueZ backend refuses a passive scan without patterns and takes ours.
    with pytest.raises(BleakError, match="or_patterns"):
        BleakScannerBlueZDBus(None, None, "passive", bluez={})
    BleakScannerBlueZDBus(None, None, "passive", bluez=passive["bluez"])


def test_active_settings_register_no_patterns() -> None:
    assert scanner_kwargs(GatewaySettings(scanning_mode="active"), None) == {}
    active = scanner_kwargs(GatewaySettings(scanning_mode="active", adapter="hci0"), None)
    assert active == {"bluez": {"adapter": "hci0"}}
