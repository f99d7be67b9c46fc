"""Passers-by: devices heard that never came into a zone, for the capture rate."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cloud_api.ingest.gateway_status import passers_by_increase
from firmware_sim.population import PersonKind
from firmware_sim.runner import EventLog, drive
from firmware_sim.scenario import load_scenario
from firmware_sim.store import SimStore
from gateway.passers import PasserCounter
from storelink.wire import GatewayState, GatewayStatus, Subject, SubjectType

PHONE = Subject(type=SubjectType.ANONYMOUS, ref="anon-1")
SHOPPER = Subject(type=SubjectType.ANONYMOUS, ref="anon-2")


def test_a_device_that_never_came_in_counts_once_it_is_forgotten() -> None:
    counter = PasserCounter(forget_after_s=60)
    for t in (0.0, 5.0, 10.0):
        counter.heard(PHONE, t)
        counter.heard(SHOPPER, t)
    counter.came_in(SHOPPER)
    assert counter.expire(69.0) == 0  # heard 59 s ago: maybe still about
    assert counter.expire(70.0) == 1  # the phone only passed; the shopper came in
    assert counter.expire(1000.0) == 0  # each is counted, or not, once


def test_how_long_a_device_has_been_heard_restarts_once_it_was_forgotten() -> None:
    counter = PasserCounter(forget_after_s=60)
    assert counter.heard_for_s(PHONE, 5.0) == 0.0  # never heard
    for t in (10.0, 40.0, 90.0):
        counter.heard(PHONE, t)
    assert counter.heard_for_s(PHONE, 95.0) == 85.0
    counter.expire(200.0)
    counter.heard(PHONE, 210.0)
    assert counter.heard_for_s(PHONE, 215.0) == 5.0


def test_how_long_a_device_has_been_about_follows_its_address_rotation() -> None:
    counter = PasserCounter(forget_after_s=60)
    old, new, other = (Subject(type=SubjectType.ANONYMOUS, ref=f"anon-{n}") for n in "abc")
    for step in range(200):
        counter.heard(old, step * 0.5, kind="apple_phone", rssi=-70)
    # At 100 s, 0.5 s after the old address's last advert, the phone's address changes.
    counter.heard(new, 100.0, kind="apple_phone", rssi=-72)
    counter.heard(new, 104.0, kind="apple_phone", rssi=-72)
    assert counter.heard_for_s(new, 105.0) == 105.0
    # A device of another class, or far weaker, appearing then is not that phone.
    counter.heard(other, 100.2, kind="apple_watch", rssi=-70)
    assert counter.heard_for_s(other, 105.0) == pytest.approx(4.8)


def test_an_address_rotation_is_followed_only_when_one_device_fell_silent() -> None:
    counter = PasserCounter(forget_after_s=60)
    a, b, new = (Subject(type=SubjectType.ANONYMOUS, ref=f"anon-{n}") for n in "abn")
    for t in range(50):
        counter.heard(a, float(t), kind="google", rssi=-70)
        counter.heard(b, float(t), kind="google", rssi=-71)
    counter.heard(new, 49.5, kind="google", rssi=-70)
    # Both fell silent: which one rotated cannot be told.
    assert counter.heard_for_s(new, 55.0) == 5.5
    # Heard again after the new one appeared, b is another device: the rotated one was a.
    counter.heard(b, 50.0, kind="google", rssi=-71)
    assert counter.heard_for_s(new, 55.0) == 55.0


def test_a_device_heard_again_is_not_forgotten() -> None:
    counter = PasserCounter(forget_after_s=60)
    counter.heard(PHONE, 0.0)
    counter.heard(PHONE, 50.0)
    assert counter.expire(100.0) == 0
    assert counter.expire(110.0) == 1


def test_the_gateway_reports_the_street_it_hears() -> None:
    store = SimStore(load_scenario("boutique"), 3, hours=0.5)
    log = EventLog(3)
    drive(store, log)
    passersby = sum(1 for person in store.people if person.kind == PersonKind.PASSERBY)
    reported = log.statuses[-1].passers_by
    # Most passers-by carry a phone the gateway hears; some are out of range or not forgotten
    # yet when the run ends, a few carry two devices.
    assert 0.4 * passersby <= reported <= 1.5 * passersby, (reported, passersby)


def status(passers_by: int, uptime_s: float) -> GatewayStatus:
    return GatewayStatus(
        store_id="store-1",
        gateway_id="gw-1",
        state=GatewayState.ONLINE,
        ts=datetime.now(UTC),
        uptime_s=uptime_s,
        passers_by=passers_by,
    )


def test_the_cloud_counts_the_increase_and_all_of_it_after_a_restart() -> None:
    assert passers_by_increase(None, None, status(7, 60.0)) == 7
    assert passers_by_increase(7, 60.0, status(10, 90.0)) == 3
    # Restarted: the counter began again (it went down, or the uptime did).
    assert passers_by_increase(10, 90.0, status(4, 30.0)) == 4
    assert passers_by_increase(10, 90.0, status(12, 30.0)) == 12
