"""Passers-by: devices heard that never came into a zone, for the capture rate."""

from __future__ import annotations

from datetime import UTC, datetime

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
