"""Bluetooth LE device addresses as phones, wearables and beacons use them.

Bluetooth Core Specification v5.4, Vol 6, Part B, §1.3.2 defines the random address types by the
two most significant bits of the address: ``11`` static, ``01`` resolvable private (RPA), ``00``
non-resolvable private (NRPA). An RPA is ``prand`` (24 bits, top bits 01) followed by
``hash = ah(IRK, prand)`` (Vol 3, Part H, §2.2.2): the low 24 bits of AES-128 under the identity
resolving key of 13 zero bytes and ``prand``. Whoever holds the IRK can tell the device's
addresses belong together; nobody else can. Devices pick a new private address every
``TGAP(private_addr_int)``, 15 minutes recommended (Vol 3, Part C, Appendix A).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum

from bluetooth_data_tools import get_cipher_for_irk

IRK_BYTES = 16
ADDRESS_ROTATION_S = 15 * 60.0
_PADDING = bytes(13)


class AddressType(StrEnum):
    PUBLIC = "public"
    STATIC = "static"
    RPA = "rpa"
    NRPA = "nrpa"


def format_address(octets: bytes) -> str:
    """``AA:BB:CC:DD:EE:FF``, most significant octet first, as BlueZ and bleak show it."""
    if len(octets) != 6:
        raise ValueError("an address is 6 octets")
    return ":".join(f"{octet:02X}" for octet in octets)


def ah(irk: bytes, prand: bytes) -> bytes:
    """The random address hash function: 3 bytes, most significant first."""
    if len(irk) != IRK_BYTES or len(prand) != 3:
        raise ValueError("ah takes a 16-byte IRK and a 3-byte prand")
    encryptor = get_cipher_for_irk(irk).encryptor()
    return (encryptor.update(_PADDING + prand) + encryptor.finalize())[13:]


def resolvable_private_address(irk: bytes, prand: bytes) -> str:
    """The RPA for ``prand``; its two top bits are forced to 01 as the specification requires."""
    if len(prand) != 3:
        raise ValueError("prand is 3 bytes")
    prand = bytes([prand[0] & 0x3F | 0x40]) + prand[1:]
    return format_address(prand + ah(irk, prand))


def non_resolvable_private_address(octets: bytes) -> str:
    """An NRPA: top bits 00, and not all the remaining bits 0 or 1 (nudged if they are)."""
    if len(octets) != 6:
        raise ValueError("an address is 6 octets")
    value = bytearray(octets)
    value[0] &= 0x3F
    rest = int.from_bytes(value, "big")
    if rest in (0, (1 << 46) - 1):
        value[5] ^= 0x01
    return format_address(bytes(value))


def static_random_address(octets: bytes) -> str:
    """A static random address (top bits 11): a beacon has no reason to rotate it."""
    if len(octets) != 6:
        raise ValueError("an address is 6 octets")
    return format_address(bytes([octets[0] | 0xC0]) + octets[1:])


def address_type(address: str) -> AddressType:
    """The random address type its top two bits say (PUBLIC cannot be told from the address)."""
    top = int(address[:2], 16) >> 6
    return {0b11: AddressType.STATIC, 0b01: AddressType.RPA, 0b00: AddressType.NRPA}.get(
        top, AddressType.PUBLIC
    )


@dataclass
class RotatingAddress:
    """A private address that changes every ``period_s``, the first change at ``phase_s``.

    ``key`` names the device in the seeded derivation of each period's random bits, so the same
    seed gives the same addresses whatever order they are asked for.
    """

    key: str
    kind: AddressType
    period_s: float = ADDRESS_ROTATION_S
    phase_s: float = 0.0
    irk: bytes | None = None
    _cache: dict[int, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in (AddressType.RPA, AddressType.NRPA):
            raise ValueError("a rotating address is resolvable or non-resolvable private")
        if self.kind is AddressType.RPA and (self.irk is None or len(self.irk) != IRK_BYTES):
            raise ValueError("a resolvable private address needs a 16-byte IRK")
        if self.period_s <= 0:
            raise ValueError("the rotation period must be positive")

    def index(self, t: float) -> int:
        """Which address period the unix time ``t`` falls in."""
        return int((t - self.phase_s) // self.period_s)

    def start_of(self, index: int) -> float:
        return self.phase_s + index * self.period_s

    def at(self, t: float) -> str:
        return self.for_index(self.index(t))

    def for_index(self, index: int) -> str:
        address = self._cache.get(index)
        if address is None:
            octets = random.Random(f"{self.key}/address/{index}").randbytes(6)
            if self.kind is AddressType.RPA:
                assert self.irk is not None
                address = resolvable_private_address(self.irk, octets[:3])
            else:
                address = non_resolvable_private_address(octets)
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[index] = address
        return address

    def during(self, t0: float, t1: float) -> list[str]:
        """Every address used in ``[t0, t1]``, in order."""
        return [self.for_index(i) for i in range(self.index(t0), self.index(t1) + 1)]
