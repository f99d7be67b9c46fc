"""Who a device is, as far as a gateway may know: a pseudonymous ``Subject`` or nothing."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from uuid import UUID

from gateway.decode import IBeacon
from storelink.tokens import token_ref
from storelink.wire import Subject, SubjectType

ANONYMOUS_PREFIX = "anon-"


@dataclass(frozen=True)
class IdentityRules:
    app_uuid: str
    store_beacons: frozenset[str]
    """``uuid:major:minor`` ids in canonical form (see ``gateway.config.canonical_beacon_id``)."""
    pseudonym_key: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "app_uuid", str(UUID(self.app_uuid)))


def identify(address: str, beacon: IBeacon | None, rules: IdentityRules) -> Subject | None:
    """The subject behind an advertisement; None for the store's own fixed beacons."""
    if beacon is None:
        return Subject(type=SubjectType.ANONYMOUS, ref=pseudonym(address, rules.pseudonym_key))
    if beacon.uuid == rules.app_uuid:
        # The token rotates every 15 minutes; only the cloud can tell whose it is.
        return Subject(type=SubjectType.APP, ref=token_ref(beacon.major, beacon.minor))
    if beacon.beacon_id in rules.store_beacons:
        return None
    return Subject(type=SubjectType.BEACON, ref=f"{beacon.uuid}.{beacon.major}.{beacon.minor}")


def pseudonym(address: str, key: bytes) -> str:
    """A stable reference for an address that cannot be turned back into it without ``key``."""
    digest = hmac.new(key, address.upper().encode(), hashlib.sha256).hexdigest()
    return ANONYMOUS_PREFIX + digest[:16]
