"""Passers-by: devices the gateway hears that never come into a zone (people passing the window).

The capture rate of a store is the shoppers who came in among everyone who came by; the
gateway above the door hears the phones on the pavement too. A device counts as a passer-by
once it has gone unheard for ``forget_after_s`` without ever having been in a zone (or owned by
a peer gateway, which means it is in the store). Memory holds only the devices heard within
that time, so a busy street cannot make it grow without bound.

Phones randomise their address every few minutes; someone walking past is heard for seconds,
so the same person is rarely counted twice.

The counter also says how long a device has been about (``heard_for_s``), across its address
rotations where it can tell: a private address changes at once, the old one falling silent as
the new one starts, so a new subject of the same device class, heard at about the RSSI of one
that fell silent within ``ROTATION_GAP_S`` before it appeared (and of only one such), is taken
to be that device under its new address. This only dates the device; it names nobody.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from storelink.wire import Subject

# Long enough that a shopper briefly out of earshot inside the store is not a passer-by.
FORGET_AFTER_S = 300.0
# An address rotation: the old subject's last sighting at most this long before the new one's
# first, at most this far apart in (smoothed) RSSI.
ROTATION_GAP_S = 0.6
ROTATION_RSSI_DB = 5.0
# Rotations followed back at most this many times.
ROTATION_CHAIN = 16


@dataclass
class _Heard:
    first_heard: float
    last_heard: float
    came_in: bool = False
    kind: Hashable | None = None
    rssi: float = 0.0
    # Subjects of the same kind and RSSI last heard just before this one appeared.
    before: tuple[Subject, ...] = ()


class PasserCounter:
    def __init__(self, forget_after_s: float = FORGET_AFTER_S) -> None:
        self.forget_after_s = forget_after_s
        self._heard: dict[Subject, _Heard] = {}

    def heard(
        self, subject: Subject, now: float, *, kind: Hashable | None = None, rssi: float = 0.0
    ) -> None:
        """``subject`` heard at ``now``; ``kind`` (a device class, None: no rotation linking)
        and ``rssi`` let ``heard_for_s`` follow its device across address rotations."""
        known = self._heard.get(subject)
        if known is None:
            before = (
                ()
                if kind is None
                else tuple(
                    other
                    for other, h in self._heard.items()
                    if h.kind == kind
                    and now - h.last_heard <= ROTATION_GAP_S
                    and abs(h.rssi - rssi) <= ROTATION_RSSI_DB
                )
            )
            self._heard[subject] = _Heard(now, now, kind=kind, rssi=rssi, before=before)
        else:
            known.last_heard = max(known.last_heard, now)
            known.rssi = rssi

    def heard_for_s(self, subject: Subject, now: float) -> float:
        """How long ``subject``'s device has been heard, without a break of ``forget_after_s``,
        followed back across the address rotations the counter can tell."""
        known = self._heard.get(subject)
        if known is None:
            return 0.0
        since = known.first_heard
        for _ in range(ROTATION_CHAIN):
            # Of the candidates, those heard again since it appeared are other devices.
            silent = [
                h
                for other in known.before
                if (h := self._heard.get(other)) is not None and h.last_heard <= known.first_heard
            ]
            if len(silent) != 1:
                break
            known = silent[0]
            since = min(since, known.first_heard)
        return now - since

    def came_in(self, subject: Subject) -> None:
        known = self._heard.get(subject)
        if known is not None:
            known.came_in = True

    def expire(self, now: float) -> int:
        """Forget the devices unheard for ``forget_after_s``; how many of them only passed by."""
        gone = [s for s, h in self._heard.items() if now - h.last_heard >= self.forget_after_s]
        passed = 0
        for subject in gone:
            passed += not self._heard.pop(subject).came_in
        return passed
