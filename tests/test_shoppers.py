"""Shoppers on a real database: consent history, app-key signatures, devices, export, erasure."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from cloud_api.auth.app_auth import sign_app_request
from cloud_api.commerce.shopify import shopify_signature
from cloud_api.ingest.directory import ShopperDirectory
from cloud_api.ingest.presence_service import PresenceOutcome, PresenceService
from cloud_api.ingest.resolve import shopper_token_ref
from cloud_api.match.offer_policy import offer_policy
from cloud_api.shoppers.consent import email_hash
from cloud_api.shoppers.devices import consented_irks, consented_wearables
from cloud_api.store.db import make_engine
from cloud_api.store.migrate import upgrade_database
from cloud_api.store.models import (
    Base,
    ConsentRecord,
    PresenceEventRow,
    Shopper,
    ShopperDevice,
    Visit,
)
from storelink.tokens import token_window
from storelink.wire import (
    GatewayConfig,
    PresenceEvent,
    PresenceKind,
    Subject,
    SubjectType,
    config_topic,
)
from tests.helpers import ADMIN_HEADERS, ADMIN_TOKEN, MqttRecorder, wait_for
from tests.services import Mosquitto
from tests.shopper_app import (
    SHOPIFY_SECRET,
    STORE_UUID,
    TRAIL_RUNNERS,
    WEBHOOK_SECRET,
    App,
    Cloud,
    cart_body,
    post_cart,
    register,
    running_cloud,
)

IRK = bytes(range(16))
FOB = {"kind": "key_fob", "uuid": "A1B2C3D4-0000-4000-8000-00000000F0B1", "major": 7, "minor": 42}
FOB_REF = "a1b2c3d4-0000-4000-8000-00000000f0b1.7.42"


@pytest.fixture
def cloud(database_url: str) -> Iterator[Cloud]:
    yield from running_cloud(database_url, admin_token=ADMIN_TOKEN)


def consent_body(offers: bool, footfall: bool, version: str = "2026-12") -> dict[str, Any]:
    return {
        "consent": {"personal_offers": offers, "footfall_analytics": footfall},
        "consent_text_version": version,
    }


def seen(
    cloud: Cloud,
    subject: Subject,
    ts: datetime,
    kind: PresenceKind = PresenceKind.ENTER,
    dwell_s: float = 0.0,
    directory: ShopperDirectory | None = None,
) -> PresenceOutcome:
    """A gateway of store-1 reports the subject, as the MQTT consumer would hand it on."""
    context = cloud.context
    service = PresenceService(
        context.sessions, directory or context.directory, offer_policy(context.settings)
    )
    event = PresenceEvent(
        store_id="store-1",
        gateway_id="gw-1",
        zone_id="entrance",
        kind=kind,
        subject=subject,
        ts=ts,
        dwell_s=dwell_s,
        rssi=-60,
    )
    return service.handle(event, datetime.now(UTC))


def app_subject(app: App, ts: datetime) -> Subject:
    ref = shopper_token_ref(app.app_key, token_window(ts.timestamp()))
    return Subject(type=SubjectType.APP, ref=ref)


# --- app-key signatures -------------------------------------------------------------------------


def test_shopper_endpoints_need_the_shoppers_own_signature(cloud: Cloud) -> None:
    alice, bob = register(cloud.client), register(cloud.client)
    path = f"/v1/shoppers/{alice.shopper_id}/consent"
    body = consent_body(False, False)

    unsigned = cloud.client.put(path, json=body)
    assert unsigned.status_code == 401
    assert "X-Storelink-App-Signature" in unsigned.json()["detail"]

    bobs_key = alice.request(cloud.client, "PUT", path, body, key=bob.app_key)
    assert bobs_key.status_code == 401
    assert "does not match" in bobs_key.json()["detail"]

    stale = alice.request(cloud.client, "PUT", path, body, at=time.time() - 3600)
    assert stale.status_code == 401
    assert "away from the cloud's clock" in stale.json()["detail"]

    # A signature is for one method and path: a consent change cannot be replayed as erasure.
    timestamp = str(int(time.time()))
    raw = json.dumps(body).encode()
    signature = sign_app_request(alice.app_key, timestamp, "PUT", path, raw)
    replayed = cloud.client.request(
        "DELETE",
        f"/v1/shoppers/{alice.shopper_id}",
        content=raw,
        headers={"X-Storelink-Timestamp": timestamp, "X-Storelink-App-Signature": signature},
    )
    assert replayed.status_code == 401
    assert alice.request(cloud.client, "GET", f"/v1/shoppers/{alice.shopper_id}").status_code == 200

    with cloud.context.sessions() as session:
        shopper = session.get(Shopper, alice.shopper_id)
        assert shopper is not None and shopper.consent_personal_offers


def test_an_unknown_shopper_is_404_even_signed(cloud: Cloud) -> None:
    ghost = App("shp_nobody", bytes(32))
    response = ghost.request(cloud.client, "GET", "/v1/shoppers/shp_nobody/export")
    assert response.status_code == 404


# --- consent ------------------------------------------------------------------------------------


def test_consent_history_is_kept_per_purpose(cloud: Cloud) -> None:
    alice = register(cloud.client, personal_offers=True, footfall_analytics=False)
    path = f"/v1/shoppers/{alice.shopper_id}/consent"
    # Only footfall changes: one record; then the same answers again: none.
    assert alice.request(cloud.client, "PUT", path, consent_body(True, True, "2026-11")).is_success
    assert alice.request(cloud.client, "PUT", path, consent_body(True, True, "2026-11")).is_success
    # A new text version is agreed to anew, for both purposes.
    assert alice.request(cloud.client, "PUT", path, consent_body(False, True)).is_success

    history = sorted(cloud.rows(ConsentRecord), key=lambda r: r.id)
    assert [(r.purpose, r.granted, r.text_version) for r in history] == [
        ("personal_offers", True, "2026-11"),
        ("footfall_analytics", False, "2026-11"),
        ("footfall_analytics", True, "2026-11"),
        ("personal_offers", False, "2026-12"),
        ("footfall_analytics", True, "2026-12"),
    ]
    assert all(r.at.tzinfo is not None for r in history)

    state = alice.request(cloud.client, "GET", path).json()
    assert state["personal_offers"]["granted"] is False
    assert state["personal_offers"]["text_version"] == "2026-12"
    assert state["footfall_analytics"]["granted"] is True


def test_withdrawal_stops_identification_in_every_worker(cloud: Cloud) -> None:
    alice = register(cloud.client)
    now = datetime.now(UTC)
    ref = shopper_token_ref(alice.app_key, token_window(now.timestamp()))
    # Another worker: its own directory over the same database.
    other = ShopperDirectory(cloud.context.sessions)
    assert app_resolves(other, ref, now) == alice.shopper_id
    assert other.resolve_device(FOB_REF) is None

    path = f"/v1/shoppers/{alice.shopper_id}/devices"
    assert alice.request(cloud.client, "POST", path, {"device": FOB}).status_code == 201
    other.refresh()
    owner = other.resolve_device(FOB_REF)
    assert owner is not None and owner.shopper_id == alice.shopper_id

    consent = f"/v1/shoppers/{alice.shopper_id}/consent"
    assert alice.request(cloud.client, "PUT", consent, consent_body(False, False)).is_success
    other.refresh()
    assert app_resolves(other, ref, now) is None
    assert other.resolve_device(FOB_REF) is None


def app_resolves(directory: ShopperDirectory, ref: str, at: datetime) -> str | None:
    found = directory.resolve(ref, at)
    return found.shopper_id if found else None


def test_events_after_a_withdrawal_mid_visit_are_anonymous(cloud: Cloud) -> None:
    alice = register(cloud.client)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    entered = seen(cloud, app_subject(alice, start), start)
    assert entered.shopper_id == alice.shopper_id

    consent = f"/v1/shoppers/{alice.shopper_id}/consent"
    assert alice.request(cloud.client, "PUT", consent, consent_body(False, False)).is_success

    later = start + timedelta(minutes=2)
    dwell = seen(cloud, app_subject(alice, later), later, PresenceKind.DWELL, dwell_s=120)
    assert dwell.shopper_id is None
    assert dwell.visit_id != entered.visit_id

    events = sorted(cloud.rows(PresenceEventRow), key=lambda e: e.ts)
    assert [e.shopper_id for e in events] == [alice.shopper_id, None]
    visits = {v.id: v for v in cloud.rows(Visit)}
    assert visits[entered.visit_id].shopper_id == alice.shopper_id
    anonymous = visits[dwell.visit_id]
    assert anonymous.shopper_id is None
    assert anonymous.subject_type == "app"


# --- devices ------------------------------------------------------------------------------------


def test_wearable_irks_reach_the_gateways_only_while_consent_holds(cloud: Cloud) -> None:
    alice = register(cloud.client)
    path = f"/v1/shoppers/{alice.shopper_id}/devices"
    everywhere = {"device": {"kind": "wearable", "irk": IRK.hex(), "label": "watch"}}
    one_store = {"device": {"kind": "wearable", "irk": "ff" * 16, "store_id": "store-2"}}
    watch = alice.request(cloud.client, "POST", path, everywhere)
    assert watch.status_code == 201, watch.text
    assert watch.json()["ref"].startswith("wear-")
    assert alice.request(cloud.client, "POST", path, one_store).status_code == 201

    with cloud.context.sessions() as session:
        assert consented_irks(session, "store-1") == [IRK]
        assert sorted(consented_irks(session, "store-2")) == sorted([IRK, bytes([0xFF] * 16)])
        assert consented_wearables(session, "store-1") == {watch.json()["ref"]: IRK}

    # The gateway publishes the wearable under its ref: it is the shopper's visit.
    outcome = seen(
        cloud, Subject(type=SubjectType.WEARABLE, ref=watch.json()["ref"]), datetime.now(UTC)
    )
    assert outcome.shopper_id == alice.shopper_id

    consent = f"/v1/shoppers/{alice.shopper_id}/consent"
    assert alice.request(cloud.client, "PUT", consent, consent_body(False, False)).is_success
    with cloud.context.sessions() as session:
        assert consented_irks(session, "store-1") == []
        assert consented_irks(session, "store-2") == []


def test_a_key_fob_is_one_shoppers_and_resolves_in_presence(cloud: Cloud) -> None:
    alice, bob = register(cloud.client), register(cloud.client)
    added = alice.request(
        cloud.client, "POST", f"/v1/shoppers/{alice.shopper_id}/devices", {"device": FOB}
    )
    assert added.status_code == 201, added.text
    assert added.json()["ref"] == FOB_REF
    taken = bob.request(
        cloud.client, "POST", f"/v1/shoppers/{bob.shopper_id}/devices", {"device": FOB}
    )
    assert taken.status_code == 409

    outcome = seen(cloud, Subject(type=SubjectType.BEACON, ref=FOB_REF), datetime.now(UTC))
    assert outcome.shopper_id == alice.shopper_id
    [visit] = cloud.rows(Visit)
    assert visit.shopper_id == alice.shopper_id

    removed = alice.request(
        cloud.client, "DELETE", f"/v1/shoppers/{alice.shopper_id}/devices/{FOB_REF}"
    )
    assert removed.status_code == 204
    later = datetime.now(UTC) + timedelta(hours=2)
    assert seen(cloud, Subject(type=SubjectType.BEACON, ref=FOB_REF), later).shopper_id is None


def test_a_device_needs_a_valid_irk_or_beacon_id(cloud: Cloud) -> None:
    alice = register(cloud.client)
    path = f"/v1/shoppers/{alice.shopper_id}/devices"
    for device in (
        {"kind": "wearable", "irk": "00" * 15},
        {"kind": "key_fob", "uuid": "not-a-uuid", "major": 1, "minor": 2},
        {"kind": "key_fob", "uuid": STORE_UUID, "major": 70000, "minor": 2},
        {"kind": "phone", "irk": IRK.hex()},
    ):
        response = alice.request(cloud.client, "POST", path, {"device": device})
        assert response.status_code == 422, device
    assert cloud.rows(ShopperDevice) == []


# --- export and erasure -------------------------------------------------------------------------


def populate(
    cloud: Cloud, app: App, email: str, customer_id: int, fob: dict[str, Any], irk: bytes
) -> dict[str, Any]:
    """Everything a shopper can leave behind: devices, carts, an order, visits, an offer, events."""
    client = cloud.client
    sid = app.shopper_id
    assert (
        app.request(
            client,
            "POST",
            f"/v1/shoppers/{sid}/identities",
            {"email": email, "shopify_customer_id": customer_id},
        ).status_code
        == 204
    )
    watch = app.request(
        client,
        "POST",
        f"/v1/shoppers/{sid}/devices",
        {"device": {"kind": "wearable", "irk": irk.hex()}},
    ).json()
    assert (
        app.request(client, "POST", f"/v1/shoppers/{sid}/devices", {"device": fob}).status_code
        == 201
    )
    now = datetime.now(UTC)
    cart = cart_body(sid, now - timedelta(hours=3), cart_id=f"cart-{sid}", items=[TRAIL_RUNNERS])
    response = post_cart(client, WEBHOOK_SECRET, cart)
    assert response.status_code == 202, response.text
    # Walking in with an abandoned cart: a visit, presence events, an offer and its notification.
    entered = seen(cloud, app_subject(app, now), now)
    assert entered.notification is not None
    seen(cloud, Subject(type=SubjectType.WEARABLE, ref=watch["ref"]), now + timedelta(seconds=5))
    checkout = {
        "token": f"tok{customer_id}",
        "email": email,
        "customer": {"id": customer_id, "email": email},
        "line_items": [
            {"sku": "SOCK-007", "title": "Merino socks", "quantity": 2, "price": "12.50"}
        ],
        "total_price": "25.00",
        "currency": "EUR",
        "abandoned_checkout_url": f"https://shop.example/recover/{customer_id}",
        "updated_at": now.isoformat(),
        "completed_at": None,
    }
    order = {
        "id": customer_id + 1,
        "checkout_token": f"tok{customer_id}",
        "email": email,
        "customer": {"id": customer_id},
        "line_items": [
            {"sku": "SOCK-007", "title": "Merino socks", "quantity": 2, "price": "12.50"}
        ],
        "total_price": "25.00",
        "currency": "EUR",
        "discount_codes": [
            {"code": entered.notification.offer_code, "amount": "2.50", "type": "percentage"}
        ],
        "created_at": now.isoformat(),
    }
    for topic, payload in (("checkouts/create", checkout), ("orders/create", order)):
        raw = json.dumps(payload).encode()
        response = client.post(
            "/v1/webhooks/shopify",
            content=raw,
            headers={
                "X-Shopify-Hmac-Sha256": shopify_signature(SHOPIFY_SECRET, raw),
                "X-Shopify-Topic": topic,
                "X-Shopify-Webhook-Id": str(uuid.uuid4()),
                "Content-Type": "application/json",
            },
        )
        assert response.status_code == 200, response.text
        assert response.json()["shopper_linked"] is True
    event = {"event_id": f"share-{sid}", "kind": "share", "at": now.isoformat()}
    assert app.request(client, "POST", f"/v1/shoppers/{sid}/events", event).status_code == 202
    return {"watch_ref": watch["ref"], "offer_code": entered.notification.offer_code}


def identifying_values(
    app: App, irk: bytes, email: str, customer_id: int, refs: list[str]
) -> list[object]:
    return [app.shopper_id, app.app_key, irk, email_hash(email), str(customer_id), *refs]


def leftovers(cloud: Cloud, needles: list[object]) -> list[tuple[str, str, object]]:
    """Every cell, of every row, of every table of the models, that holds one of ``needles``."""
    found = []
    with cloud.context.sessions() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(sa.select(table)).mappings():
                for column, value in row.items():
                    text = value if isinstance(value, bytes) else json.dumps(value, default=str)
                    for needle in needles:
                        if isinstance(needle, bytes) and isinstance(text, bytes):
                            hit = needle in text
                        else:
                            hit = isinstance(text, str) and str(needle) in text
                        if hit:
                            found.append((table.name, column, value))
    return found


def test_erasure_leaves_nothing_identifying_in_any_table(cloud: Cloud) -> None:
    alice, bob = register(cloud.client), register(cloud.client)
    bob_irk = bytes([0xB0] * 16)
    alice_refs = populate(cloud, alice, "alice@example.com", 7165291282491, FOB, IRK)
    bob_refs = populate(cloud, bob, "bob@example.com", 7165291282999, {**FOB, "minor": 43}, bob_irk)

    alice_needles = identifying_values(
        alice,
        IRK,
        "alice@example.com",
        7165291282491,
        [alice_refs["watch_ref"], FOB_REF, alice_refs["offer_code"]],
    )
    before = leftovers(cloud, alice_needles)
    assert {table for table, _, _ in before} >= {
        "shoppers",
        "consent_records",
        "shopper_devices",
        "shopper_identities",
        "carts",
        "orders",
        "offers",
        "notifications",
        "presence_events",
        "visits",
        "shopper_events",
    }

    export = alice.request(cloud.client, "GET", f"/v1/shoppers/{alice.shopper_id}/export")
    assert export.status_code == 200
    exported = export.json()["tables"]
    assert {table for table, _, _ in before} <= set(exported)
    assert exported["shoppers"][0]["app_key"] == alice.app_key.hex()
    assert all(
        row.get("shopper_id") in (alice.shopper_id, None)
        for rows in exported.values()
        for row in rows
    )

    erased = alice.request(cloud.client, "DELETE", f"/v1/shoppers/{alice.shopper_id}")
    assert erased.status_code == 200, erased.text
    assert erased.json()["erased_rows"]["shoppers"] == 1

    assert leftovers(cloud, alice_needles) == []
    gone = cloud.client.get(f"/v1/shoppers/{alice.shopper_id}", headers=ADMIN_HEADERS)
    assert gone.status_code == 404
    # Bob is untouched.
    bob_needles = identifying_values(
        bob, bob_irk, "bob@example.com", 7165291282999, [bob_refs["watch_ref"]]
    )
    assert {table for table, _, _ in leftovers(cloud, bob_needles)} == {
        table for table, _, _ in before
    }
    # Alice's devices no longer resolve anywhere, and her wearable's IRK left every config.
    directory = ShopperDirectory(cloud.context.sessions)
    assert directory.resolve_device(FOB_REF) is None
    with cloud.context.sessions() as session:
        assert consented_irks(session, "store-1") == [bob_irk]
        assert list(consented_wearables(session, "store-1")) == [bob_refs["watch_ref"]]


# --- gateway configs and the administrator ------------------------------------------------------


def test_the_retained_gateway_config_carries_the_irk_only_while_consent_holds(
    database_url: str, mosquitto: Mosquitto
) -> None:
    topic = config_topic("store-1", "gw-1")
    recorder = MqttRecorder(mosquitto.url, topic)
    try:
        for cloud in running_cloud(
            database_url, mqtt_enabled=True, mqtt_url=mosquitto.url, admin_token=ADMIN_TOKEN
        ):
            client = cloud.client
            assert (
                client.post(
                    "/v1/stores",
                    json={"store_id": "store-1", "name": "Galway"},
                    headers=ADMIN_HEADERS,
                ).status_code
                == 201
            )
            assert (
                client.post(
                    "/v1/stores/store-1/gateways",
                    json={"gateway_id": "gw-1"},
                    headers=ADMIN_HEADERS,
                ).status_code
                == 201
            )
            alice = register(client)
            watch = alice.request(
                client,
                "POST",
                f"/v1/shoppers/{alice.shopper_id}/devices",
                {"device": {"kind": "wearable", "irk": IRK.hex()}},
            ).json()

            def latest_irks() -> dict[str, str] | None:
                configs = [GatewayConfig.model_validate_json(p) for p in recorder.on(topic) if p]
                return configs[-1].irks if configs else None

            published = {watch["ref"]: IRK.hex()}
            wait_for(lambda want=published: latest_irks() == want, what="IRK published")
            consent = f"/v1/shoppers/{alice.shopper_id}/consent"
            assert alice.request(client, "PUT", consent, consent_body(False, False)).is_success
            wait_for(lambda: latest_irks() == {}, what="IRK withdrawn from the retained config")
    finally:
        recorder.close()


def test_the_administrator_may_export_and_erase_staff_may_not(database_url: str) -> None:
    for cloud in running_cloud(database_url, admin_token=ADMIN_TOKEN):
        alice = register(cloud.client)
        path = f"/v1/shoppers/{alice.shopper_id}"
        export = cloud.client.get(f"{path}/export", headers=ADMIN_HEADERS)
        assert export.status_code == 200
        assert export.json()["tables"]["shoppers"][0]["id"] == alice.shopper_id
        wrong = cloud.client.delete(path, headers={"Authorization": "Bearer not-a-token"})
        assert wrong.status_code == 401
        assert (
            cloud.client.get(f"{path}/export", headers={"Authorization": "Basic x"}).status_code
            == 401
        )
        assert cloud.client.delete(path, headers=ADMIN_HEADERS).status_code == 200
        assert cloud.client.get(path).status_code == 401
        assert cloud.client.get(path, headers=ADMIN_HEADERS).status_code == 404
        assert cloud.client.delete(path, headers=ADMIN_HEADERS).status_code == 404


def test_the_migration_keeps_existing_shoppers_answers_as_their_first_records(
    database_url: str,
) -> None:
    upgrade_database(database_url, "0004")
    given = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.table(
                    "shoppers",
                    *(sa.column(name) for name in ("id", "display_name", "app_key")),
                    *(sa.column(name) for name in ("consent_personal_offers", "consent_at")),
                    *(sa.column(name) for name in ("consent_footfall_analytics", "created_at")),
                    sa.column("consent_text_version"),
                ).insert(),
                [
                    {
                        "id": "shp_old",
                        "display_name": None,
                        "app_key": bytes(32),
                        "consent_personal_offers": True,
                        "consent_footfall_analytics": False,
                        "consent_text_version": "2025-06",
                        "consent_at": given,
                        "created_at": given,
                    }
                ],
            )
        upgrade_database(database_url)
        with engine.connect() as connection:
            rows = connection.execute(
                sa.select(ConsentRecord.purpose, ConsentRecord.granted, ConsentRecord.text_version)
                .where(ConsentRecord.shopper_id == "shp_old")
                .order_by(ConsentRecord.purpose)
            ).all()
        assert [tuple(row) for row in rows] == [
            ("footfall_analytics", False, "2025-06"),
            ("personal_offers", True, "2025-06"),
        ]
    finally:
        engine.dispose()
