"""Unguessable identifiers: offer codes a shopper reads out at the till, shopper ids, app keys.

Offer codes are Crockford base32: no I, L, O or U, so a code read aloud or typed by hand
survives the usual confusions, and ``normalise_code`` undoes them.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from storelink.tokens import APP_KEY_BYTES

CROCKFORD_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
OFFER_CODE_PREFIX = "SL-"
# 80 bits: far beyond guessing, even by someone trying codes at the till all day.
OFFER_CODE_BYTES = 10
OFFER_CODE_GROUP = 4
SHOPPER_ID_PREFIX = "shp_"
SHOPPER_ID_BYTES = 16

# Crockford decoding: case-insensitive, and the letters people mistake for digits are digits.
_DECODE = str.maketrans("ILO", "110")
_CODE_DIGITS = -(-OFFER_CODE_BYTES * 8 // 5)


def crockford(raw: bytes) -> str:
    """``raw`` in Crockford base32, 5 bits a character, most significant first."""
    bits = len(raw) * 8
    value = int.from_bytes(raw, "big")
    length = -(-bits // 5)
    value <<= length * 5 - bits
    return "".join(
        CROCKFORD_ALPHABET[(value >> (5 * shift)) & 0x1F] for shift in reversed(range(length))
    )


def _grouped(digits: str) -> str:
    groups = [digits[i : i + OFFER_CODE_GROUP] for i in range(0, len(digits), OFFER_CODE_GROUP)]
    return OFFER_CODE_PREFIX + "-".join(groups)


def format_offer_code(raw: bytes) -> str:
    """``SL-`` and ``raw`` in base32, in groups of four: ``SL-7KQ2-M9XD-...``."""
    return _grouped(crockford(raw))


def new_offer_code() -> str:
    return format_offer_code(secrets.token_bytes(OFFER_CODE_BYTES))


def normalise_code(text: str) -> str | None:
    """The canonical form of a code as a person typed it, or None if it cannot be one."""
    compact = "".join(text.split()).upper().replace("-", "")
    prefix = OFFER_CODE_PREFIX.rstrip("-")
    # By length, not by letters alone: "SL" typed for "S1" may start a code given without prefix.
    if len(compact) == _CODE_DIGITS + len(prefix) and compact.startswith(prefix):
        compact = compact[len(prefix) :]
    digits = compact.translate(_DECODE)
    if len(digits) != _CODE_DIGITS or any(c not in CROCKFORD_ALPHABET for c in digits):
        return None
    return _grouped(digits)


def offer_expiry(issued_at: datetime, ttl_s: float) -> datetime:
    return issued_at + timedelta(seconds=ttl_s)


def new_shopper_id() -> str:
    """Opaque and unguessable: it names the shopper's notification topic."""
    return SHOPPER_ID_PREFIX + crockford(secrets.token_bytes(SHOPPER_ID_BYTES)).lower()


def new_app_key() -> bytes:
    return secrets.token_bytes(APP_KEY_BYTES)
