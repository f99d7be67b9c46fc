from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.presence import PresenceTracker
from storelink.wire import PresenceKind, Subject, SubjectType

T0 = 1_764_000_000.0
SHOPPER = Subject(type=SubjectType.APP, ref="104de62a")
OTHER = Subject(type=SubjectType.ANONYMOUS, ref="anon-0123456789abcdef")


def entrance(**rules: float) -> PresenceTracker:
    """The entrance zone: enter within 3 m, exit after 20 s, dwell every minute; ``rules`` on
    top."""
    return PresenceTracker(
        store_id="store-1",
        gateway_id="gw-1",
        zone_id="entrance",
        enter_distance_m=3.0,
        exit_timeout_s=20.0,
        dwell_interval_s=60.0,
        **rules,
    )


@pytest.fixture
def tracker() -> PresenceTracker:
    return entrance()


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


def _learning(margin: float = 10.0, floor: float = 2.0) -> PresenceTracker:
    return entrance(exit_interval_margin=margin, exit_floor_s=floor)


def test_the_exit_delay_is_learned_from_each_subjects_advertising_interval() -> None:
    tracker = _learning(margin=10.0, floor=2.0)
    # A phone heard every 0.5 s, a beacon every 1.5 s (with one lost packet: 3 s).
    for i in range(10):
        tracker.observe(SHOPPER, -60, 1.0, T0 + i * 0.5)
    for at in (0.0, 1.5, 3.0, 6.0, 7.5, 9.0):
        tracker.observe(OTHER, -60, 1.0, T0 + at)
    assert tracker.exit_delay_s(SHOPPER) == pytest.approx(10 * 0.5 + 2.0)
    # The median ignores the lost packet; 10 x 1.5 + 2 = 17 s, still under the 20 s cap.
    assert tracker.exit_delay_s(OTHER) == pytest.approx(17.0)
    last_phone = T0 + 9 * 0.5
    assert tracker.expire(last_phone + 6.9) == []
    [event] = tracker.expire(last_phone + 7.0)
    assert event.kind is PresenceKind.EXIT and event.subject == SHOPPER
    assert event.dwell_s == pytest.approx(4.5)
    assert tracker.present == {OTHER}


def test_far_sightings_teach_the_interval_but_do_not_keep_a_subject_present() -> None:
    tracker = _learning(margin=4.0, floor=1.0)
    tracker.observe(SHOPPER, -60, 1.0, T0)
    for i in range(1, 6):
        tracker.observe(SHOPPER, -85, 15.0, T0 + i)  # heard, far away
    assert tracker.exit_delay_s(SHOPPER) == pytest.approx(5.0)
    [event] = tracker.expire(T0 + 5.0)
    assert event.kind is PresenceKind.EXIT and event.dwell_s == 0.0


def test_the_global_timeout_caps_the_learned_delay_and_covers_new_subjects() -> None:
    tracker = _learning(margin=10.0, floor=2.0)
    tracker.observe(SHOPPER, -60, 1.0, T0)
    tracker.observe(SHOPPER, -60, 1.0, T0 + 4)
    # Only one gap known: not enough to trust, the fixed timeout applies.
    assert tracker.exit_delay_s(SHOPPER) == 20.0
    for i in range(2, 5):
        tracker.observe(SHOPPER, -60, 1.0, T0 + 4 * i)
    # A slow advertiser (every 4 s): 10 x 4 + 2 = 42 s, capped at exit_timeout_s.
    assert tracker.exit_delay_s(SHOPPER) == 20.0
    assert tracker.expire(T0 + 16 + 19.9) == []
    assert len(tracker.expire(T0 + 16 + 20)) == 1


def test_without_a_margin_the_fixed_timeout_applies(tracker: PresenceTracker) -> None:
    for i in range(10):
        tracker.observe(SHOPPER, -60, 1.0, T0 + i * 0.2)
    assert tracker.exit_delay_s(SHOPPER) == 20.0
    assert tracker.expire(T0 + 1.8 + 19.9) == []


WATCH = Subject(type=SubjectType.ANONYMOUS, ref="anon-00000000000000ee")
PHONE_2 = Subject(type=SubjectType.ANONYMOUS, ref="anon-00000000000000ff")


def door(window_s: float = 2.0) -> PresenceTracker:
    return entrance(companion_window_s=window_s)


def test_a_watch_entering_with_a_phone_is_the_same_persons_second_device() -> None:
    tracker = door()
    assert [e.kind for e in tracker.observe(SHOPPER, -65, 2.0, T0)] == [PresenceKind.ENTER]
    assert tracker.observe(WATCH, -70, 2.5, T0 + 1.5, wearable=True) == []
    # Paired for as long as the phone's visit lasts, even once the window has passed.
    assert tracker.observe(WATCH, -70, 2.5, T0 + 10, wearable=True) == []
    assert tracker.present == {SHOPPER}
    # The phone leaves; the watch, still near on its own later, is a visit of its own.
    tracker.expire(T0 + 31)
    [event] = tracker.observe(WATCH, -70, 2.5, T0 + 32, wearable=True)
    assert (event.kind, event.subject) == (PresenceKind.ENTER, WATCH)


def test_a_phone_after_a_watch_pairs_too_but_two_phones_never_do() -> None:
    tracker = door()
    tracker.observe(WATCH, -70, 2.5, T0, wearable=True)
    assert tracker.observe(SHOPPER, -65, 2.0, T0 + 1) == []
    [event] = tracker.observe(PHONE_2, -65, 2.0, T0 + 1.2)
    assert (event.kind, event.subject) == (PresenceKind.ENTER, PHONE_2)
    assert tracker.present == {WATCH, PHONE_2}


def test_a_watch_entering_after_the_window_enters_on_its_own() -> None:
    tracker = door()
    tracker.observe(SHOPPER, -65, 2.0, T0)
    [event] = tracker.observe(WATCH, -70, 2.5, T0 + 2.5, wearable=True)
    assert event.subject == WATCH
    without = door(window_s=0.0)
    without.observe(SHOPPER, -65, 2.0, T0)
    assert [e.subject for e in without.observe(WATCH, -70, 2.5, T0 + 0.5, wearable=True)] == [WATCH]


def test_at_a_door_only_arrivals_enter() -> None:
    tracker = entrance(arrival_heard_max_s=60.0)
    # Walking in: heard for the 20 s of the approach, then near.
    [event] = tracker.observe(SHOPPER, -65, 2.0, T0, heard_s=20.0)
    assert event.kind is PresenceKind.ENTER
    # Heard inside for five minutes before passing the door: already in the store.
    assert tracker.observe(OTHER, -65, 2.0, T0, heard_s=300.0) == []
    # Once in, a visit goes on however long the subject has been heard.
    [event] = tracker.observe(SHOPPER, -65, 2.0, T0 + 70, heard_s=90.0)
    assert event.kind is PresenceKind.DWELL
    assert tracker.present == {SHOPPER}
