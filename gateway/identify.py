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
from collections.abc import Callable, Mapping
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


# --- one device, several subjects ---------------------------------------------------------------

# Which of two subjects heard from one address names the device: the app's token names a shopper
# (the cloud resolves it), a resolved wearable its owner; a pseudonym only the address.
_NAME_RANK = {
    SubjectType.ANONYMOUS: 0,
    SubjectType.BEACON: 1,
    SubjectType.WEARABLE: 2,
    SubjectType.APP: 3,
}


class _Link:
    __slots__ = ("last_heard", "name", "stay")

    def __init__(self, subject: Subject, now: float) -> None:
        self.name = subject
        self.stay = subject
        self.last_heard = now


class SameDevice:
    """Subjects heard from one address are one device, and one presence.

    A phone with the shopper app sends the app's token and its own broadcast (Apple's Nearby
    Info, Google's Nearby) from the same private address; the token changes every 15 minutes
    while the address stays, and the address changes while the token stays. Identified alone,
    each would be a subject of its own: two visits for one stay, two entries at the door, and a
    new visit at every change. Here an advert's subject is replaced by:

    - the subject whose stay the address's adverts already keep (``present``), so that a new
      token or a new address seen on the same radio continues the stay rather than starting
      one; only an element the two share links them (an address, or a token across an address
      change), never a guess;
    - else the best name heard from the address lately: the app's token over the phone's
      pseudonym, the newer token over an older one.

    An address unheard for ``forget_after_s`` is forgotten; ``clear`` forgets everything (a new
    UTC day, whose pseudonyms must not be linkable to the day before; new IRKs).
    """

    def __init__(self, forget_after_s: float) -> None:
        self.forget_after_s = forget_after_s
        self._by_address: dict[str, _Link] = {}
        # A token or wearable heard on a new address continues the old address's link.
        self._by_subject: dict[Subject, _Link] = {}

    def __len__(self) -> int:
        return len(self._by_address)

    def subject(
        self, address: str, subject: Subject, now: float, present: Callable[[Subject], bool]
    ) -> Subject:
        """The subject that ``subject``, heard from ``address`` at ``now``, stands for."""
        link = self._by_address.get(address)
        if (
            link is not None
            and link.stay is subject
            and link.name is subject
            and now - link.last_heard <= self.forget_after_s
        ):
            # The common case, a device repeating its advert: nothing to link (the identity
            # cache hands out the same Subject object for the same advert).
            link.last_heard = now
            return subject
        link = self._fresh(link, now)
        if subject.type is not SubjectType.ANONYMOUS:
            # A token heard on a new address: the phone rotated its address, the stay goes on.
            known = self._fresh(self._by_subject.get(subject), now)
            if known is not None and known is not link and (link is None or present(known.stay)):
                link = known
        if link is None:
            link = _Link(subject, now)
        self._by_address[address] = link
        link.last_heard = now
        if subject != link.name and _NAME_RANK[subject.type] >= _NAME_RANK[link.name.type]:
            link.name = subject
        if subject.type is not SubjectType.ANONYMOUS:
            self._by_subject[subject] = link
        if link.stay != link.name and not present(link.stay):
            link.stay = link.name
        return link.stay

    def clear(self) -> None:
        self._by_address.clear()
        self._by_subject.clear()

    def _fresh(self, link: _Link | None, now: float) -> _Link | None:
        return None if link is None or now - link.last_heard > self.forget_after_s else link

    def prune(self, now: float) -> None:
        """Forget addresses and subjects unheard for ``forget_after_s``."""
        horizon = now - self.forget_after_s
        for address in [a for a, link in self._by_address.items() if link.last_heard < horizon]:
            del self._by_address[address]
        for subject in [s for s, link in self._by_subject.items() if link.last_heard < horizon]:
            del self._by_subject[subject]
