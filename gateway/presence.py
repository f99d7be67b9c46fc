"""Presence in one zone: who entered, who is still there, who has left."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from storelink.wire import PresenceEvent, PresenceKind, Subject

# Gaps kept per subject for its advertising interval, and how many before trusting the median.
INTERVAL_SAMPLES = 9
MIN_INTERVAL_SAMPLES = 3


@dataclass
class _Visit:
    entered_at: float
    last_near: float
    last_dwell: float
    rssi: float
    distance_m: float
    last_heard: float = 0.0
    # The latest gaps between two sightings at any distance: the device's advertising interval.
    gaps: deque[float] = field(default_factory=lambda: deque(maxlen=INTERVAL_SAMPLES))

    def interval_s(self) -> float | None:
        """Median gap between sightings, None until a few are known."""
        if len(self.gaps) < MIN_INTERVAL_SAMPLES:
            return None
        ordered = sorted(self.gaps)
        return ordered[len(ordered) // 2]


class PresenceTracker:
    """Enter when first seen within ``enter_distance_m``; exit after ``exit_timeout_s`` unseen.

    Once in, sightings within ``exit_distance_m`` (when set, at least the enter distance) keep a
    subject present: the hysteresis keeps someone standing at the edge from flickering.

    Only sightings within the enter distance count: a phone passing by on the street is heard,
    but never enters, and a shopper walking away is gone even while still faintly heard.

    With ``exit_interval_margin`` > 0 the exit delay is learned per subject: its median gap
    between sightings (at any distance: its advertising interval as this gateway hears it) times
    the margin, plus ``exit_floor_s``, never more than ``exit_timeout_s`` (nor before a few gaps
    are known). A phone advertising every 100 ms is gone sooner than a beacon sending every 2 s.

    With ``enter_confirm_s`` > 0 a subject enters only once its near sightings span that long,
    with no gap between two longer than ``exit_timeout_s`` (what would end a visit): someone
    walking past the door is near for a moment. The visit still starts at the
    first near sighting (the enter event's ``dwell_s`` says how long ago that was).

    With ``companion_window_s`` > 0 a wearable (a watch, a band) that would enter within that
    long of a phone's enter, or a phone within that long of a wearable's, is taken for the same
    person's second device: it does not enter while the first one's visit lasts. People walking
    through a door come in one by one; a person's phone and watch come in together. Only a
    wearable and a phone are paired, never two phones, and each device at most once, so two
    people entering together are merged only when one of them is heard by a wearable alone.

    With ``arrival_heard_max_s`` > 0 only arrivals enter: a subject the gateway has heard for
    longer than that (``heard_s``, from ``gateway.passers.PasserCounter.heard_for_s``) before it
    first comes near was already about. For the gateway at a door: someone walking in is heard
    for the few dozen seconds of their approach, a shopper or a member of staff walking past the
    door inside, under an address not counted yet, for minutes.
    """

    def __init__(
        self,
        *,
        store_id: str,
        gateway_id: str,
        zone_id: str,
        enter_distance_m: float,
        exit_timeout_s: float,
        dwell_interval_s: float,
        exit_distance_m: float | None = None,
        exit_interval_margin: float = 0.0,
        exit_floor_s: float = 0.0,
        enter_confirm_s: float = 0.0,
        companion_window_s: float = 0.0,
        arrival_heard_max_s: float = 0.0,
    ) -> None:
        self.store_id = store_id
        self.gateway_id = gateway_id
        self.zone_id = zone_id
        self.enter_distance_m = enter_distance_m
        self.exit_timeout_s = exit_timeout_s
        self.dwell_interval_s = dwell_interval_s
        self.exit_distance_m = exit_distance_m
        self.exit_interval_margin = exit_interval_margin
        self.exit_floor_s = exit_floor_s
        self.enter_confirm_s = enter_confirm_s
        self.companion_window_s = companion_window_s
        self.arrival_heard_max_s = arrival_heard_max_s
        # The latest enters (time, subject, wearable), for pairing a person's devices.
        self._entered: deque[tuple[float, Subject, bool]] = deque()
        # A second device -> the subject whose visit it is part of.
        self._companions: dict[Subject, Subject] = {}
        self._visits: dict[Subject, _Visit] = {}
        # Near but not yet confirmed: subject -> (first, latest) near sighting.
        self._candidates: dict[Subject, tuple[float, float]] = {}

    @property
    def present(self) -> frozenset[Subject]:
        return frozenset(self._visits)

    def __contains__(self, subject: object) -> bool:
        return subject in self._visits

    def __iter__(self) -> Iterator[Subject]:
        """Who is present, in the order they entered (a copy: they may exit meanwhile). Not the
        ``present`` set: its order changes with Python's string hashing from run to run, and
        exits decided together must come out in the same order every run."""
        return iter(list(self._visits))

    def observe(
        self,
        subject: Subject,
        rssi: float,
        distance_m: float,
        now: float,
        *,
        wearable: bool = False,
        heard_s: float = 0.0,
    ) -> list[PresenceEvent]:
        visit = self._visits.get(subject)
        limit = self.enter_distance_m
        if visit is not None:
            if now > visit.last_heard:
                visit.gaps.append(now - visit.last_heard)
                visit.last_heard = now
            if self.exit_distance_m is not None:
                limit = max(limit, self.exit_distance_m)
        if distance_m > limit:
            return []
        if visit is None:
            if 0 < self.arrival_heard_max_s < heard_s:
                return []
            since = self._confirmed_since(subject, now)
            if since is None or self._accompanies(subject, wearable, now):
                return []
            visit = self._visits[subject] = _Visit(since, now, now, rssi, distance_m, now)
            return [self._event(PresenceKind.ENTER, subject, visit, now, dwell_s=now - since)]
        visit.last_near, visit.rssi, visit.distance_m = now, rssi, distance_m
        if now - visit.last_dwell < self.dwell_interval_s:
            return []
        visit.last_dwell = now
        return [self._event(PresenceKind.DWELL, subject, visit, now, now - visit.entered_at)]

    def _accompanies(self, subject: Subject, wearable: bool, now: float) -> bool:
        """Whether ``subject`` is the second device of someone who has just entered."""
        if self.companion_window_s <= 0:
            return False
        host = self._companions.get(subject)
        if host is not None:
            if host in self._visits:
                return True
            del self._companions[subject]
        entered = self._entered
        while entered and now - entered[0][0] > self.companion_window_s:
            entered.popleft()
        paired = set(self._companions.values())
        for _, other, other_wearable in entered:
            if other_wearable != wearable and other in self._visits and other not in paired:
                self._companions[subject] = other
                return True
        entered.append((now, subject, wearable))
        return False

    def _confirmed_since(self, subject: Subject, now: float) -> float | None:
        """When the subject's near stay began, once it has lasted ``enter_confirm_s``."""
        if self.enter_confirm_s <= 0:
            return now
        first, latest = self._candidates.get(subject, (now, now))
        if now - latest > self.exit_timeout_s:
            first = now
        if now - first >= self.enter_confirm_s:
            self._candidates.pop(subject, None)
            return first
        self._candidates[subject] = (first, now)
        return None

    def exit_delay_s(self, subject: Subject) -> float:
        """How long ``subject`` may go unseen near before it has left."""
        visit = self._visits.get(subject)
        if visit is None or self.exit_interval_margin <= 0:
            return self.exit_timeout_s
        interval = visit.interval_s()
        if interval is None:
            return self.exit_timeout_s
        learned = self.exit_interval_margin * interval + self.exit_floor_s
        return min(self.exit_timeout_s, learned)

    def expire(self, now: float) -> list[PresenceEvent]:
        if self._candidates:
            horizon = now - self.exit_timeout_s
            for subject in [s for s, (_, latest) in self._candidates.items() if latest < horizon]:
                del self._candidates[subject]
        if self._companions:
            for companion in [c for c, h in self._companions.items() if h not in self._visits]:
                del self._companions[companion]
        if self.exit_interval_margin <= 0:
            timeout = self.exit_timeout_s
            gone = [s for s, v in self._visits.items() if now - v.last_near >= timeout]
        else:
            gone = [s for s, v in self._visits.items() if now - v.last_near >= self.exit_delay_s(s)]
        return [self._exit(subject, now) for subject in gone]

    def release(self, subject: Subject, now: float) -> list[PresenceEvent]:
        """``subject`` exits now if present: another gateway of the store has taken it over."""
        self._candidates.pop(subject, None)
        if subject not in self._visits:
            return []
        return [self._exit(subject, now)]

    def exit_all(self, now: float) -> list[PresenceEvent]:
        """Everyone leaves: the gateway is shutting down and will not see them go."""
        return [self._exit(subject, now) for subject in list(self._visits)]

    def _exit(self, subject: Subject, now: float) -> PresenceEvent:
        visit = self._visits.pop(subject)
        # Dated when the gateway decides, but the stay ends when the subject was last seen.
        return self._event(
            PresenceKind.EXIT, subject, visit, now, visit.last_near - visit.entered_at
        )

    def _event(
        self, kind: PresenceKind, subject: Subject, visit: _Visit, now: float, dwell_s: float
    ) -> PresenceEvent:
        return PresenceEvent(
            store_id=self.store_id,
            gateway_id=self.gateway_id,
            zone_id=self.zone_id,
            kind=kind,
            subject=subject,
            ts=datetime.fromtimestamp(now, UTC),
            dwell_s=round(dwell_s, 3),
            rssi=round(visit.rssi, 1),
            distance_m=round(visit.distance_m, 2),
        )
