"""Who a device is, as far as a gateway may know: a pseudonymous ``Subject`` or nothing.

In order:

1. the shopper app's rotating token is an ``app`` subject (only the cloud can tell whose);
2. an address that resolves with one of the IRKs the cloud pushed for consenting shoppers
   (``GatewaySettings.irks``) is that shopper's ``wearable``: bluetooth-data-tools'
   ``resolve_private_address``, as the Bluetooth Core Specification's ``ah`` function defines it;
3. an iBeacon or AltBeacon (``uuid.major.minor``) or Eddystone-UID (``namespace.instance``) is a
   ``beacon`` subject, unless it is one of the store's own (``store_beacons``): those are nobody;
4. Eddystone URL, TLM and EID frames without an id are store infrastructure: nobody;
5. everything else is ``anonymous``: a keyed pseudonym of the address under a key that changes
   every UTC day (``day_key``), so that pseudonyms cannot be linked across days.

Apple Continuity and other vendors' data are never an identity: their tags rotate with the
address. Raw addresses are read here and never returned, logged or stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from bluetooth_data_tools import get_cipher_for_irk, resolve_private_address

from gateway.decode import AltBeacon, AppToken, Decoded, EddystoneUID, Frame, IBeacon
from storelink.tokens import token_ref
from storelink.wire import Subject, SubjectType

ANONYMOUS_PREFIX = "anon-"
IRK_BYTES = 16
DAY_S = 86_400
_DAY_KEY_LABEL = b"storelink/anonymous-day-key/v1/"
# A Bluetooth address as BlueZ and bleak print it; CoreBluetooth gives UUIDs instead, which can
# be pseudonymised but not resolved.
_ADDRESS_RE = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")


@dataclass(frozen=True)
class IdentityRules:
    app_uuid: str
    store_beacons: frozenset[str]
    """``uuid:major:minor`` and ``namespace:instance`` ids in canonical form (see
    ``gateway.config.canonical_beacon_id``)."""
    pseudonym_key: bytes
    """The configured (or per-run random) key the day keys are derived from."""
    irks: Mapping[str, bytes] = field(default_factory=dict, hash=False)
    """Subject ref -> 16-byte identity resolving key, for wearables of consenting shoppers."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "app_uuid", str(UUID(self.app_uuid)))
        for ref, irk in self.irks.items():
            Subject(type=SubjectType.WEARABLE, ref=ref)  # refuses a ref that is no pseudonym
            if len(irk) != IRK_BYTES:
                raise ValueError(f"the IRK for {ref!r} is not {IRK_BYTES} bytes")


# --- anonymous pseudonyms -----------------------------------------------------------------------


def utc_day(t: float) -> date:
    return datetime.fromtimestamp(t, UTC).date()


def day_key(pseudonym_key: bytes, day: date) -> bytes:
    """The key of one UTC day: HMAC-SHA256(pseudonym_key, label + ISO date).

    Without ``pseudonym_key`` one day's key tells nothing of another's, so pseudonyms made on
    different days cannot be linked, even by someone who learns one day's key.
    """
    return hmac.new(
        pseudonym_key, _DAY_KEY_LABEL + day.isoformat().encode(), hashlib.sha256
    ).digest()


def pseudonym(address: str, key: bytes) -> str:
    """A reference for an address that cannot be turned back into it without ``key``."""
    digest = hmac.new(key, address.upper().encode(), hashlib.sha256).hexdigest()
    return ANONYMOUS_PREFIX + digest[:16]


def anonymous_ref(address: str, pseudonym_key: bytes, t: float) -> str:
    """The pseudonym a gateway with ``pseudonym_key`` publishes for ``address`` at unix time t."""
    return pseudonym(address, day_key(pseudonym_key, utc_day(t)))


# --- resolvable private addresses ---------------------------------------------------------------


def is_resolvable_private_address(address: str) -> bool:
    """A random address whose two top bits are 01 (Core Specification Vol 6, Part B, §1.3.2)."""
    return _ADDRESS_RE.match(address) is not None and int(address[:2], 16) >> 6 == 0b01


class IrkResolver:
    """Which consenting shopper's wearable, if any, a resolvable private address belongs to."""

    def __init__(self, irks: Mapping[str, bytes]) -> None:
        self._ciphers: list[tuple[str, Any]] = [
            (ref, get_cipher_for_irk(irk)) for ref, irk in irks.items()
        ]

    def __bool__(self) -> bool:
        return bool(self._ciphers)

    def __len__(self) -> int:
        return len(self._ciphers)

    def resolve(self, address: str) -> str | None:
        """The subject ref whose IRK generated ``address``; None for any other address."""
        if not self._ciphers or not is_resolvable_private_address(address):
            return None
        for ref, cipher in self._ciphers:
            if resolve_private_address(cipher, address):
                return ref
        return None


# --- identification -----------------------------------------------------------------------------


def _is_app_token(frame: Frame, rules: IdentityRules) -> bool:
    return isinstance(frame, AppToken) or (
        isinstance(frame, IBeacon) and frame.uuid == rules.app_uuid
    )


def _beacon_id(frame: Frame) -> tuple[str, str] | None:
    """A beacon frame's id as ``store_beacons`` spells it, and its subject ref."""
    if isinstance(frame, IBeacon | AltBeacon):
        return frame.beacon_id, f"{frame.uuid}.{frame.major}.{frame.minor}"
    if isinstance(frame, EddystoneUID):
        return frame.beacon_id, f"{frame.namespace}.{frame.instance}"
    return None


class IdentityResolver:
    """``identify`` with what it may keep: the day key, the IRK ciphers, resolved addresses.

    Not thread-safe; the pipeline calls it from the scanner's callback only.
    """

    RESOLVED_CACHE_SIZE = 4096

    def __init__(self, rules: IdentityRules) -> None:
        self.rules = rules
        self._resolver = IrkResolver(rules.irks)
        self._day: date | None = None
        self._day_key = b""
        # address -> the wearable it resolved to, or None: AES per IRK is the costly part.
        self._resolved: dict[str, str | None] = {}

    def set_irks(self, irks: Mapping[str, bytes]) -> None:
        """Replace the wearables' IRKs (remote configuration); forgets resolved addresses."""
        self.rules = IdentityRules(
            self.rules.app_uuid, self.rules.store_beacons, self.rules.pseudonym_key, dict(irks)
        )
        self._resolver = IrkResolver(self.rules.irks)
        self._resolved.clear()

    def anonymous(self, address: str, now: float) -> Subject:
        day = utc_day(now)
        if day != self._day:
            self._day, self._day_key = day, day_key(self.rules.pseudonym_key, day)
        return Subject(type=SubjectType.ANONYMOUS, ref=pseudonym(address, self._day_key))

    def resolve(self, address: str) -> str | None:
        if not self._resolver:
            return None
        if address in self._resolved:
            return self._resolved[address]
        if len(self._resolved) >= self.RESOLVED_CACHE_SIZE:
            self._resolved.clear()
        ref = self._resolved[address] = self._resolver.resolve(address)
        return ref

    def identify(self, address: str, decoded: Decoded, now: float) -> Subject | None:
        """The subject behind an advertisement; None for the store's own beacons and for frames
        that name nobody."""
        rules = self.rules
        for frame in decoded.frames:
            if _is_app_token(frame, rules):
                # The token rotates every 15 minutes; only the cloud can tell whose it is.
                assert isinstance(frame, AppToken | IBeacon)
                return Subject(type=SubjectType.APP, ref=token_ref(frame.major, frame.minor))
        wearable = self.resolve(address)
        if wearable is not None:
            return Subject(type=SubjectType.WEARABLE, ref=wearable)
        for frame in decoded.frames:
            ids = _beacon_id(frame)
            if ids is not None:
                beacon_id, ref = ids
                if beacon_id in rules.store_beacons:
                    return None
                return Subject(type=SubjectType.BEACON, ref=ref)
        if decoded.frames:
            # Eddystone URL, TLM and EID only: the store's infrastructure, nobody.
            return None
        return self.anonymous(address, now)


def identify(address: str, decoded: Decoded, rules: IdentityRules, now: float) -> Subject | None:
    """One-off ``IdentityResolver(rules).identify``; the pipeline keeps an ``IdentityResolver``."""
    return IdentityResolver(rules).identify(address, decoded, now)
