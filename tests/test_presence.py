from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.presence import PresenceTracker
from storelink.wire import PresenceKind, Subject, SubjectType

T0 = 1_764_000_000.0
SHOPPER = Subject(type=SubjectType.APP, ref="104de62a")
OTHER = Subject(type=SubjectType.ANONYMOUS, ref="anon-0123456789abcdef")


@pytest.fixture
def tracker() -> PresenceTracker:
    return PresenceTracker(
        store_id="store-1",
        gateway_id="gw-1",
        zone_id="entrance",
        enter_distance_m=3.0,
        exit_timeout_s=20.0,
        dwell_interval_s=60.0,
    )


def test_enter_on_the_first_sighting_within_the_enter_distance(tracker: PresenceTracker) -> None:
    [event] = tracker.observe(SHOPPER, -65.04, 2.0, T0)
    assert event.kind is PresenceKind.ENTER
    assert (event.store_id, event.gateway_id, event.zone_id) == ("store-1", "gw-1", "entrance")
    assert event.subject == SHOPPER
    assert event.ts == datetime.fromtimestamp(T0, UTC)
    assert (event.dwell_s, event.rssi, event.distance_m) == (0.0, -65.0, 2.0)
    assert tracker.observe(SHOPPER, -65, 2.0, T0 + 1) == []
    assert tracker.present == {SHOPPER}


def test_dwell_every_interval_while_present(tracker: PresenceTracker) -> None:
    tracker.observe(SHOPPER, -65, 2.0, T0)
    kinds = []
    for second in range(1, 130):
        for event in tracker.observe(SHOPPER, -66, 2.2, T0 + second):
            kinds.append((event.kind, event.dwell_s))
    assert kinds == [(PresenceKind.DWELL, 60.0), (PresenceKind.DWELL, 120.0)]


def test_exit_after_the_timeout_without_a_near_sighting(tracker: PresenceTracker) -> None:
    tracker.observe(SHOPPER, -65, 2.0, T0)
    tracker.observe(SHOPPER, -64, 1.8, T0 + 30)
    assert tracker.expire(T0 + 49) == []
    [event] = tracker.expire(T0 + 50)
    assert event.kind is PresenceKind.EXIT
    # Dated when decided, but the stay ended at the last sighting.
    assert event.ts == datetime.fromtimestamp(T0 + 50, UTC)
    assert event.dwell_s == 30.0
    assert event.rssi == -64.0
    assert tracker.present == frozenset()
    assert tracker.expire(T0 + 100) == []


def test_far_sightings_do_not_keep_a_subject_present(tracker: PresenceTracker) -> None:
    tracker.observe(SHOPPER, -65, 2.0, T0)
    for second in range(1, 25):
        assert tracker.observe(SHOPPER, -85, 8.0, T0 + second) == []
    [event] = tracker.expire(T0 + 20)
    assert event.kind is PresenceKind.EXIT
    assert event.dwell_s == 0.0


def test_a_passer_by_never_enters(tracker: PresenceTracker) -> None:
    for second in range(0, 300, 5):
        assert tracker.observe(OTHER, -80, 7.5, T0 + second) == []
    assert tracker.present == frozenset()
    assert tracker.expire(T0 + 1000) == []


def test_a_subject_comes_back_as_a_new_visit(tracker: PresenceTracker) -> None:
    tracker.observe(SHOPPER, -65, 2.0, T0)
    tracker.expire(T0 + 25)
    [event] = tracker.observe(SHOPPER, -65, 2.0, T0 + 100)
    assert (event.kind, event.dwell_s) == (PresenceKind.ENTER, 0.0)


def test_exit_all_empties_the_zone(tracker: PresenceTracker) -> None:
    tracker.observe(SHOPPER, -65, 2.0, T0)
    tracker.observe(OTHER, -60, 1.0, T0 + 5)
    events = tracker.exit_all(T0 + 10)
    assert {(e.kind, e.subject) for e in events} == {
        (PresenceKind.EXIT, SHOPPER),
        (PresenceKind.EXIT, OTHER),
    }
    assert tracker.present == frozenset()


def test_events_are_unique(tracker: PresenceTracker) -> None:
    enter = tracker.observe(SHOPPER, -65, 2.0, T0)
    exit_ = tracker.exit_all(T0 + 1)
    assert enter[0].event_id != exit_[0].event_id
