"""Hex input and `storelink gateway decode HEX`."""

from __future__ import annotations

import json
from types import SimpleNamespace
from uuid import UUID

import pytest
from typer.testing import CliRunner

from firmware_sim.frames import ibeacon_frame
from gateway.decode.ad import InvalidHexError, canonical_ad_bytes, parse_ad, parse_hex, raw_bytes
from storelink.cli import app

VECTOR = "0201061aff4c000215e2c56db5dffb48d2b060d0f5a71096e000010002c5"
APP_UUID = "5f2dd896-b886-4549-ae01-e41acd7a354a"


@pytest.mark.parametrize(
    "text",
    [
        VECTOR,
        VECTOR.upper(),
        "0x" + VECTOR,
        " ".join(VECTOR[i : i + 2] for i in range(0, len(VECTOR), 2)),  # hcidump
        ":".join(VECTOR[i : i + 2] for i in range(0, len(VECTOR), 2)),
        VECTOR[:20] + "\n    " + VECTOR[20:],  # btmon wraps long data
    ],
)
def test_hex_as_tools_print_it(text: str) -> None:
    assert parse_hex(text) == bytes.fromhex(VECTOR)


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "no advertising data"), ("0201060", "odd number"), ("02 01 0g", "not a hex digit")],
)
def test_bad_hex_is_refused_clearly(text: str, message: str) -> None:
    with pytest.raises(InvalidHexError, match=message):
        parse_hex(text)
    with pytest.raises(InvalidHexError, match="more than one advertisement"):
        parse_hex("00" * 1651)


def test_raw_bytes_come_from_platform_data_when_kept() -> None:
    assert raw_bytes(()) is None
    assert raw_bytes(("/org/bluez/hci0/dev_X", {})) is None  # what BlueZ puts there
    assert raw_bytes((SimpleNamespace(raw=b"\x02\x01\x06"),)) == b"\x02\x01\x06"
    assert raw_bytes((SimpleNamespace(raw="0201"),)) is None


def test_canonical_bytes_of_every_field_kind() -> None:
    fields = (
        "Band 7",
        [
            "0000180d-0000-1000-8000-00805f9b34fb",
            "12345678-0000-1000-8000-00805f9b34fb",
            "adabfb00-6e7d-4601-bda2-bffaa68956ba",
        ],
        {
            "0000feaa-0000-1000-8000-00805f9b34fb": b"\x10\x00\x03a",
            "12345678-0000-1000-8000-00805f9b34fb": b"\x01",
            "adabfb00-6e7d-4601-bda2-bffaa68956ba": b"\x02",
        },
        {0x0157: bytearray(b"\x01\x02"), 0x004C: memoryview(b"\x10\x05")},
        -12,
    )
    raw = canonical_ad_bytes(*fields)
    name, uuids, service_data, manufacturer_data, tx_power = parse_ad(raw)
    assert (name, uuids, tx_power) == (fields[0], fields[1], -12)
    assert service_data == fields[2]
    assert manufacturer_data == {0x0157: b"\x01\x02", 0x004C: b"\x10\x05"}
    with pytest.raises(TypeError):
        canonical_ad_bytes(None, [], {}, {0x004C: 12345}, None)
    with pytest.raises(ValueError, match="AD structure"):
        canonical_ad_bytes(None, [], {}, {0x004C: bytes(300)}, None)


runner = CliRunner()


def test_cli_decodes_the_ibeacon_vector() -> None:
    result = runner.invoke(app, ["gateway", "decode", VECTOR])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "frames": [
            {
                "format": "ibeacon",
                "uuid": "e2c56db5-dffb-48d2-b060-d0f5a71096e0",
                "major": 1,
                "minor": 2,
                "tx_power": -59,
            }
        ],
        "device_class": "beacon",
        "manufacturer": "Apple, Inc.",
    }


def test_cli_takes_hcidump_bytes_as_separate_words() -> None:
    words = [VECTOR[i : i + 2] for i in range(0, len(VECTOR), 2)]
    result = runner.invoke(app, ["gateway", "decode", *words])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["frames"][0]["minor"] == 2


def test_cli_knows_the_app_token_under_the_configured_uuid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = ibeacon_frame(UUID(APP_UUID), 4173, 58922, -59).hex()
    monkeypatch.setenv("STORELINK_APP_UUID", APP_UUID)
    result = runner.invoke(app, ["gateway", "decode", raw])
    assert result.exit_code == 0, result.output
    [frame] = json.loads(result.output)["frames"]
    assert (frame["format"], frame["ref"]) == ("app_token", "104de62a")
    other = runner.invoke(app, ["gateway", "decode", "--app-uuid", str(UUID(int=1)), raw])
    assert json.loads(other.output)["frames"][0]["format"] == "ibeacon"


def test_cli_unknown_and_empty_structures_are_unknown_not_errors() -> None:
    result = runner.invoke(app, ["gateway", "decode", "0201060000ff"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "frames": [],
        "device_class": "unknown",
        "manufacturer": None,
    }


@pytest.mark.parametrize("text", ["zz", "020", ""])
def test_cli_invalid_hex_exits_2_with_a_clear_error(text: str) -> None:
    result = runner.invoke(app, ["gateway", "decode", text])
    assert result.exit_code == 2
    assert "HEX" in result.output


def test_cli_bad_app_uuid_exits_2() -> None:
    result = runner.invoke(app, ["gateway", "decode", "--app-uuid", "nope", VECTOR])
    assert result.exit_code == 2
