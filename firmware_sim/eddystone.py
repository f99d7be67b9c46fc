"""Google's Eddystone frames: UID, URL and unencrypted TLM (github.com/google/eddystone).

Every frame is flags, the complete list of 16-bit service UUIDs holding 0xFEAA, then service data
for 0xFEAA whose first byte is the frame type. Multi-byte fields are big-endian, unlike the GAP
fields around them.
"""

from __future__ import annotations

from firmware_sim.frames import (
    BEACON_FLAGS,
    advertisement,
    flags_ad,
    service_data16_ad,
    uuid16_list_ad,
)
from gateway.decode.eddystone import URL_EXPANSIONS, URL_MAX_ENCODED_BYTES, URL_SCHEMES

EDDYSTONE_SERVICE = 0xFEAA
UID_FRAME = 0x00
URL_FRAME = 0x10
TLM_FRAME = 0x20
NAMESPACE_BYTES = 10
INSTANCE_BYTES = 6
TEMPERATURE_UNSUPPORTED = -128.0


def _frame(service_data: bytes) -> bytes:
    return advertisement(
        flags_ad(BEACON_FLAGS),
        uuid16_list_ad([EDDYSTONE_SERVICE]),
        service_data16_ad(EDDYSTONE_SERVICE, service_data),
    )


def _tx_power(dbm: int) -> bytes:
    if not -100 <= dbm <= 20:
        raise ValueError(f"Eddystone TX power is -100 to 20 dBm, got {dbm}")
    return dbm.to_bytes(1, "big", signed=True)


def uid_frame(namespace: bytes, instance: bytes, tx_power_0m: int) -> bytes:
    """Eddystone-UID: 10-byte namespace, 6-byte instance, two reserved zero bytes."""
    if len(namespace) != NAMESPACE_BYTES or len(instance) != INSTANCE_BYTES:
        raise ValueError("an Eddystone UID is a 10-byte namespace and a 6-byte instance")
    return _frame(bytes([UID_FRAME]) + _tx_power(tx_power_0m) + namespace + instance + b"\0\0")


def encode_url(url: str) -> bytes:
    """The scheme prefix byte and the URL with the spec's expansion codes substituted."""
    # The longest prefix that matches: https://www. before https://.
    matching = [code for code, scheme in enumerate(URL_SCHEMES) if url.startswith(scheme)]
    if not matching:
        raise ValueError(f"an Eddystone URL starts with one of {URL_SCHEMES}, got {url!r}")
    scheme_code = max(matching, key=lambda code: len(URL_SCHEMES[code]))
    rest = url[len(URL_SCHEMES[scheme_code]) :]
    encoded = bytearray([scheme_code])
    while rest:
        for code, expansion in enumerate(URL_EXPANSIONS):
            if rest.startswith(expansion):
                encoded.append(code)
                rest = rest[len(expansion) :]
                break
        else:
            char = rest[0]
            if not 0x21 <= ord(char) <= 0x7E:
                raise ValueError(f"{char!r} cannot go into an Eddystone URL")
            encoded.append(ord(char))
            rest = rest[1:]
    if len(encoded) - 1 > URL_MAX_ENCODED_BYTES:
        raise ValueError(f"{url!r} encodes to more than {URL_MAX_ENCODED_BYTES} bytes")
    return bytes(encoded)


def url_frame(url: str, tx_power_0m: int) -> bytes:
    return _frame(bytes([URL_FRAME]) + _tx_power(tx_power_0m) + encode_url(url))


def tlm_frame(battery_mv: int, temperature_c: float, adv_count: int, uptime_s: float) -> bytes:
    """Unencrypted Eddystone-TLM, version 0.

    Temperature is signed 8.8 fixed point (-128 °C when the beacon has no sensor); the uptime
    counter ticks every 0.1 s. Both counters wrap at 32 bits like a beacon's.
    """
    if not 0 <= battery_mv <= 0xFFFF:
        raise ValueError("battery voltage is 0 to 65535 mV")
    if not -128.0 <= temperature_c < 128.0:
        raise ValueError("temperature is -128 to 128 °C")
    temperature = round(temperature_c * 256) & 0xFFFF
    return _frame(
        bytes([TLM_FRAME, 0x00])
        + battery_mv.to_bytes(2, "big")
        + temperature.to_bytes(2, "big")
        + (adv_count & 0xFFFFFFFF).to_bytes(4, "big")
        + (int(uptime_s * 10) & 0xFFFFFFFF).to_bytes(4, "big")
    )
