"""App check-ins: signed, mapped to the store by its beacon, merged with gateway presence."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cloud_api.ingest.presence_service import PresenceService
from cloud_api.ingest.resolve import shopper_token_ref
from cloud_api.match.offer_policy import offer_policy
from cloud_api.store.models import PresenceEventRow, Store, Visit
from storelink.tokens import token_window
from storelink.wire import PresenceEvent, PresenceKind, Subject, SubjectType
from tests.shopper_app import STORE_UUID, App, Cloud, register, running_cloud

BEACON = {"uuid": STORE_UUID.upper(), "major": 100, "minor": 1}


@pytest.fixture
def cloud(database_url: str) -> Iterator[Cloud]:
    for cloud in running_cloud(database_url):
        with cloud.context.sessions() as session:
            session.add(
                Store(
                    id="store-1",
                    name="Galway",
                    timezone="Europe/Dublin",
                    app_uuid=None,
                    calibration={},
                    staff_beacons=[],
                    store_beacons=[f"{STORE_UUID}:100:1"],
                    created_at=datetime.now(UTC),
                )
            )
            session.commit()
        yield cloud


def checkin(cloud: Cloud, app: App, kind: str, at: datetime, **changes: Any) -> Any:
    body = {"shopper_id": app.shopper_id, "beacon": BEACON, "kind": kind, "at": at.isoformat()}
    return app.request(cloud.client, "POST", "/v1/presence/checkins", body | changes)


def gateway_sees(
    cloud: Cloud, app: App, kind: PresenceKind, ts: datetime, dwell_s: float, token_at: datetime
) -> None:
    """A gateway reports the app's token of ``token_at`` (a gateway keeps the ref it entered)."""
    context = cloud.context
    service = PresenceService(context.sessions, context.directory, offer_policy(context.settings))
    ref = shopper_token_ref(app.app_key, token_window(token_at.timestamp()))
    service.handle(
        PresenceEvent(
            store_id="store-1",
            gateway_id="gw-1",
            zone_id="entrance",
            kind=kind,
            subject=Subject(type=SubjectType.APP, ref=ref),
            ts=ts,
            dwell_s=dwell_s,
            rssi=-60,
        ),
        datetime.now(UTC),
    )


def test_gateway_and_app_presence_make_one_visit_each_event_keeping_its_source(
    cloud: Cloud,
) -> None:
    alice = register(cloud.client, personal_offers=False)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=40)
    entered = checkin(cloud, alice, "enter", start)
    assert entered.status_code == 202, entered.text
    assert entered.json()["store_id"] == "store-1"
    assert entered.json()["identified"] is True
    seen_at = start + timedelta(minutes=1)
    gateway_sees(cloud, alice, PresenceKind.ENTER, seen_at, 0, seen_at)
    gateway_sees(cloud, alice, PresenceKind.EXIT, start + timedelta(minutes=10), 540, seen_at)
    # 40 minutes in store with no gateway sighting since (phone in a pocket, far from a gateway).
    left = checkin(cloud, alice, "exit", start + timedelta(minutes=40))
    assert left.status_code == 202, left.text

    [visit] = [v for v in cloud.rows(Visit) if v.id == left.json()["visit_id"]]
    assert visit.shopper_id == alice.shopper_id
    assert visit.started_at == start
    assert visit.ended_at == start + timedelta(minutes=40)
    events = sorted(cloud.rows(PresenceEventRow), key=lambda e: e.ts)
    assert [(e.source, e.kind) for e in events] == [
        ("app", "enter"),
        ("gateway", "enter"),
        ("gateway", "exit"),
        ("app", "exit"),
    ]
    assert {e.shopper_id for e in events} == {alice.shopper_id}


def test_a_shopper_in_the_store_at_midnight_leaves_the_visit_they_entered(cloud: Cloud) -> None:
    alice = register(cloud.client, personal_offers=False)
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    entered_at = midnight - timedelta(days=1, minutes=10)
    left_at = midnight - timedelta(days=1) + timedelta(minutes=20)
    entered = checkin(cloud, alice, "enter", entered_at)
    left = checkin(cloud, alice, "exit", left_at)
    assert left.json()["visit_id"] == entered.json()["visit_id"]

    [visit] = cloud.rows(Visit)
    assert (visit.started_at, visit.ended_at) == (entered_at, left_at)
    exit_event = next(e for e in cloud.rows(PresenceEventRow) if e.kind == "exit")
    assert exit_event.dwell_s == 30 * 60
    # The next day's enter is a presence of its own, under that day's ref.
    refs = {e.subject_ref for e in cloud.rows(PresenceEventRow)}
    assert len(refs) == 1
    checkin(cloud, alice, "enter", left_at + timedelta(hours=10))
    assert len({e.subject_ref for e in cloud.rows(PresenceEventRow)}) == 2


def test_a_retried_checkin_changes_nothing(cloud: Cloud) -> None:
    alice = register(cloud.client)
    at = datetime.now(UTC)
    first = checkin(cloud, alice, "enter", at)
    again = checkin(cloud, alice, "enter", at)
    assert first.json()["duplicate"] is False
    assert again.json()["duplicate"] is True
    assert again.json()["event_id"] == first.json()["event_id"]
    assert len(cloud.rows(PresenceEventRow)) == 1


def test_checkins_need_the_apps_signature_and_a_store_beacon(cloud: Cloud) -> None:
    alice, bob = register(cloud.client), register(cloud.client)
    at = datetime.now(UTC)
    body = {"shopper_id": alice.shopper_id, "beacon": BEACON, "kind": "enter", "at": at.isoformat()}
    assert cloud.client.post("/v1/presence/checkins", json=body).status_code == 401
    as_bob = bob.request(cloud.client, "POST", "/v1/presence/checkins", body)
    assert as_bob.status_code == 401
    elsewhere = checkin(cloud, alice, "enter", at, beacon={**BEACON, "minor": 2})
    assert elsewhere.status_code == 422
    assert "none of the stores' own beacons" in elsewhere.json()["detail"]
    assert checkin(cloud, alice, "wander", at).status_code == 422
    assert cloud.rows(PresenceEventRow) == []


def test_without_consent_a_checkin_is_anonymous(cloud: Cloud) -> None:
    carol = register(cloud.client, personal_offers=False, footfall_analytics=False)
    response = checkin(cloud, carol, "enter", datetime.now(UTC))
    assert response.status_code == 202
    assert response.json()["identified"] is False
    [event] = cloud.rows(PresenceEventRow)
    assert event.shopper_id is None
    assert event.source == "app"
    assert carol.shopper_id not in event.subject_ref
    [visit] = cloud.rows(Visit)
    assert visit.shopper_id is None
