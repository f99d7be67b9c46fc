"""Which gateway of a store owns a subject: the one hearing it clearly best.

Every gateway of a store hears a shopper, the nearer ones louder. Each gateway keeps the latest
smoothed RSSI of every subject as heard by itself and, from the peers' sightings summaries
(``storelink.wire.PeerSightings``), by the other gateways, and decides alone, by the same rules
as its peers, which gateway owns the subject; only the owner may enter it into its zones.

The rules (``ArbitrationRules``), per subject:

- while peers are heard from, nobody owns a new subject until ``settle_s`` after it was first
  heard (by any gateway): the peers' summaries about it may not have arrived yet (a gateway
  alone in its store owns what it hears at once);
- a reading older than ``stale_s`` no longer counts: a peer that has gone silent, or stopped
  hearing the subject, releases it;
- with no owner, or an owner whose reading is stale, the loudest fresh reading owns it at once;
- a challenger takes over only when heard at least ``margin_db`` louder than the owner (the
  deadband: a shopper half-way between two gateways stays with the first) for ``hold_s`` without
  a break (brief swings from fading or a body in the way do not move it).

Readings are dated by the receiving gateway's clock (a summary says how long ago each subject
was heard, not when), so the gateways' clocks need not agree. Pure bookkeeping: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ArbitrationRules:
    margin_db: float
    """How much louder a challenger must be heard than the owner to take the subject over."""
    hold_s: float
    """How long the challenger must stay that much louder before it does."""
    stale_s: float
    """A reading older than this no longer counts."""
    settle_s: float = 0.0
    """How long after a subject is first heard before anybody owns it: about the time the
    peers' summaries take to arrive."""

    def __post_init__(self) -> None:
        if min(self.margin_db, self.hold_s, self.settle_s) < 0 or self.stale_s <= 0:
            raise ValueError(
                "margin_db, hold_s and settle_s must not be negative, stale_s must be positive"
            )


@dataclass
class Reading:
    rssi: float
    at: float


@dataclass
class _Claim:
    since: float
    readings: dict[str, Reading] = field(default_factory=dict)
    owner: str | None = None
    challenger: str | None = None
    challenged_at: float = 0.0


class Arbiter:
    """Ownership of subjects among the gateways of one store, as ``gateway_id`` decides it."""

    def __init__(self, gateway_id: str, rules: ArbitrationRules) -> None:
        self.gateway_id = gateway_id
        self.rules = rules
        self._claims: dict[Hashable, _Claim] = {}
        self._peer_heard_at = -math.inf

    def __len__(self) -> int:
        return len(self._claims)

    def peer_alive(self, at: float) -> None:
        """A peer's summary arrived (perhaps an empty one): this gateway is not alone."""
        self._peer_heard_at = max(self._peer_heard_at, at)

    def heard(self, gateway_id: str, subject: Hashable, rssi: float, at: float) -> None:
        """``gateway_id`` heard ``subject`` at smoothed ``rssi`` at time ``at`` (this clock).

        An older reading than the one kept is ignored: summaries may arrive out of order.
        """
        claim = self._claims.get(subject)
        if claim is None:
            claim = self._claims[subject] = _Claim(since=at)
        reading = claim.readings.get(gateway_id)
        if reading is None:
            claim.readings[gateway_id] = Reading(rssi, at)
        elif at >= reading.at:
            reading.rssi, reading.at = rssi, at

    def owner(self, subject: Hashable, now: float) -> str | None:
        """The gateway owning ``subject`` at ``now``; None when no gateway hears it any more."""
        claim = self._claims.get(subject)
        if claim is None:
            return None
        rules = self.rules
        alone = now - self._peer_heard_at > rules.stale_s
        return _decide(claim, now, rules, settle_s=0.0 if alone else rules.settle_s)

    def owns(self, subject: Hashable, now: float) -> bool:
        """Whether this gateway owns ``subject``: a subject nobody claims is nobody's."""
        return self.owner(subject, now) == self.gateway_id

    def own_readings(self, since: float) -> Iterator[tuple[Hashable, Reading]]:
        """This gateway's readings taken after ``since``: what its next summary tells peers."""
        for subject, claim in self._claims.items():
            reading = claim.readings.get(self.gateway_id)
            if reading is not None and reading.at > since:
                yield subject, reading

    def prune(self, now: float) -> None:
        """Forget stale readings and subjects nobody hears any more."""
        horizon = now - self.rules.stale_s
        gone = []
        for subject, claim in self._claims.items():
            stale = [gw for gw, reading in claim.readings.items() if reading.at < horizon]
            for gateway_id in stale:
                del claim.readings[gateway_id]
            if not claim.readings:
                gone.append(subject)
        for subject in gone:
            del self._claims[subject]


def _decide(claim: _Claim, now: float, rules: ArbitrationRules, settle_s: float) -> str | None:
    """Apply the module's rules to one subject's claim, updating its owner and challenger."""
    if claim.owner is None and now - claim.since < settle_s:
        return None
    horizon = now - rules.stale_s
    if len(claim.readings) == 1:
        # Heard by one gateway only, as every subject of a gateway alone in its store.
        [(only, reading)] = claim.readings.items()
        claim.challenger = None
        claim.owner = only if reading.at >= horizon else None
        return claim.owner
    fresh = {gw: r.rssi for gw, r in claim.readings.items() if r.at >= horizon}
    if not fresh:
        claim.owner = claim.challenger = None
        return None
    # Ties go to the lowest gateway id, so that every gateway decides alike.
    best = min(fresh, key=lambda gw: (-fresh[gw], gw))
    owner = claim.owner
    if owner is None or owner not in fresh:
        claim.owner, claim.challenger = best, None
        return best
    if best == owner or fresh[best] < fresh[owner] + rules.margin_db:
        claim.challenger = None
        return owner
    if claim.challenger != best:
        claim.challenger, claim.challenged_at = best, now
    if now - claim.challenged_at >= rules.hold_s:
        claim.owner, claim.challenger = best, None
        return best
    return owner
