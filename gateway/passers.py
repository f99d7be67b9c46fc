"""Passers-by: devices the gateway hears that never come into a zone (people passing the window).

The capture rate of a store is the shoppers who came in among everyone who came by; the
gateway above the door hears the phones on the pavement too. A device counts as a passer-by
once it has gone unheard for ``forget_after_s`` without ever having been in a zone (or owned by
a peer gateway, which means it is in the store). Memory holds only the devices heard within
that time, so a busy street cannot make it grow without bound.

Phones randomise their address every few minutes; someone walking past is heard for seconds,
so the same person is rarely counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from storelink.wire import Subject

# Long enough that a shopper briefly out of earshot inside the store is not a passer-by.
FORGET_AFTER_S = 300.0


@dataclass
class _Heard:
    last_heard: float
    came_in: bool = False


class PasserCounter:
    def __init__(self, forget_after_s: float = FORGET_AFTER_S) -> None:
        self.forget_after_s = forget_after_s
        self._heard: dict[Subject, _Heard] = {}

    def heard(self, subject: Subject, now: float) -> None:
        known = self._heard.get(subject)
        if known is None:
            self._heard[subject] = _Heard(now)
        else:
            known.last_heard = max(known.last_heard, now)

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
