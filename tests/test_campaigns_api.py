"""Campaigns over the API and from the file, deciding real presence events on a real database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cloud_api.match.campaigns import DEMO_CAMPAIGNS_FILE
from cloud_api.match.decide import is_held_out
from cloud_api.store.models import CampaignDecision, NotificationDelivery, Offer
from storelink.wire import PresenceKind
from tests.engagement_fixtures import ADMIN_HEADERS, Engagement, register, running_engagement

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def cloud(database_url: str) -> Iterator[Engagement]:
    with running_engagement(database_url) as cloud:
        yield cloud


def explain(cloud: Engagement, campaign_id: str, shopper_id: str) -> dict[str, Any]:
    response = cloud.client.get(
        f"/v1/campaigns/{campaign_id}/explain",
        params={"shopper_id": shopper_id},
        headers=ADMIN_HEADERS,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_campaign_crud(cloud: Engagement) -> None:
    client = cloud.client
    listed = client.get("/v1/campaigns", headers=ADMIN_HEADERS).json()
    assert [(c["campaign"]["id"], c["builtin"]) for c in listed] == [("abandoned-cart", True)]

    created = cloud.campaign(id="spring", name="Spring", reward={"kind": "amount", "value": "5"})
    assert created["source"] == "api"
    assert created["campaign"]["reward"]["kind"] == "amount"
    again = client.post(
        "/v1/campaigns",
        json={"id": "spring", "name": "x", "reward": {"value": 1}},
        headers=ADMIN_HEADERS,
    )
    assert again.status_code == 409
    assert "PUT /v1/campaigns/spring" in again.json()["detail"]

    changed = {
        "id": "spring",
        "name": "Spring sale",
        "reward": {"value": "15"},
        "holdout_share": 0.2,
    }
    response = client.put("/v1/campaigns/spring", json=changed, headers=ADMIN_HEADERS)
    assert response.status_code == 200, response.text
    got = client.get("/v1/campaigns/spring", headers=ADMIN_HEADERS).json()
    assert got["campaign"]["name"] == "Spring sale"
    assert got["campaign"]["holdout_share"] == 0.2
    assert [
        c["campaign"]["id"] for c in client.get("/v1/campaigns", headers=ADMIN_HEADERS).json()
    ] == ["spring"]

    mismatch = client.put("/v1/campaigns/other", json=changed, headers=ADMIN_HEADERS)
    assert mismatch.status_code == 422
    assert "is not the path's" in mismatch.json()["detail"]
    assert client.delete("/v1/campaigns/spring", headers=ADMIN_HEADERS).status_code == 204
    assert client.get("/v1/campaigns/spring", headers=ADMIN_HEADERS).status_code == 404


def test_campaign_api_needs_a_token_and_a_valid_campaign(cloud: Engagement) -> None:
    client = cloud.client
    assert client.get("/v1/campaigns").status_code == 401
    bad = client.post(
        "/v1/campaigns",
        json={"id": "x", "name": "X", "reward": {"value": "10"}, "trigger": {"kind": "dwell"}},
        headers=ADMIN_HEADERS,
    )
    assert bad.status_code == 422
    assert "dwell trigger needs dwell_s" in bad.text


def test_the_campaigns_file_is_loaded_at_start_and_replaces_its_earlier_campaigns(
    database_url: str, tmp_path: Path
) -> None:
    demo = DEMO_CAMPAIGNS_FILE
    with running_engagement(database_url, campaigns_file=demo) as cloud:
        listed = cloud.client.get("/v1/campaigns", headers=ADMIN_HEADERS).json()
        assert {c["campaign"]["id"] for c in listed} == {
            "abandoned-cart",
            "racks-accessories",
            "third-visit",
        }
        assert {c["source"] for c in listed} == {"file"}
        cloud.campaign(id="from-api")
    smaller = tmp_path / "campaigns.yaml"
    smaller.write_text("campaigns:\n  - {id: third-visit, name: Renamed, reward: {value: 3}}\n")
    with running_engagement(database_url, campaigns_file=smaller) as cloud:
        listed = cloud.client.get("/v1/campaigns", headers=ADMIN_HEADERS).json()
        assert {(c["campaign"]["id"], c["campaign"]["name"]) for c in listed} == {
            ("third-visit", "Renamed"),
            ("from-api", "from-api"),
        }


def test_a_campaign_offer_is_made_logged_and_queued_in_the_outbox(cloud: Engagement) -> None:
    cloud.campaign(id="welcome", reward={"value": "20", "online": True})
    alice = register(cloud.client)
    outcome = cloud.seen(alice, NOW)
    assert outcome.notification is not None
    assert outcome.notification.campaign_id == "welcome"
    assert outcome.notification.online is True
    (offer,) = cloud.rows(Offer)
    assert offer.campaign_id == "welcome"
    assert offer.cart_id is None
    assert str(offer.percent_off) == "20.00"
    (delivery,) = cloud.rows(NotificationDelivery)
    assert (delivery.channel, delivery.status) == ("mqtt", "pending")
    assert delivery.notification_id == outcome.notification.notification_id
    why = explain(cloud, "welcome", alice.shopper_id)
    assert why["summary"].startswith(f"offered {offer.code}")
    assert why["decisions"][0]["failed"] == []


def test_a_campaign_changed_or_stopped_through_the_api_decides_the_next_event(
    cloud: Engagement,
) -> None:
    # The ingest keeps the validated campaigns between batches: a change must still count at once.
    cloud.campaign(id="welcome", reward={"value": "20"})
    alice, bob, carol = (register(cloud.client) for _ in range(3))
    first = cloud.seen(alice, NOW)
    assert first.notification is not None
    assert first.notification.percent_off == Decimal("20")

    changed = {"id": "welcome", "name": "welcome", "reward": {"value": "35"}}
    response = cloud.client.put("/v1/campaigns/welcome", json=changed, headers=ADMIN_HEADERS)
    assert response.status_code == 200, response.text
    second = cloud.seen(bob, NOW)
    assert second.notification is not None
    assert second.notification.percent_off == Decimal("35")

    stopped = {**changed, "active": False}
    response = cloud.client.put("/v1/campaigns/welcome", json=stopped, headers=ADMIN_HEADERS)
    assert response.status_code == 200, response.text
    third = cloud.seen(carol, NOW)
    assert (third.notification, third.verdicts) == (None, ())


def test_the_daily_cap_stops_a_second_offer_and_says_so(cloud: Engagement) -> None:
    cloud.campaign(id="welcome")
    alice = register(cloud.client)
    assert cloud.seen(alice, NOW - timedelta(hours=3)).notification is not None
    assert cloud.seen(alice, NOW).notification is None
    why = explain(cloud, "welcome", alice.shopper_id)
    assert why["decisions"][0]["failed"] == ["daily_cap"]
    assert "daily_cap: 1 offers in 24 h, cap 1" in why["summary"]
    assert cloud.seen(alice, NOW + timedelta(hours=22)).notification is not None


def test_a_held_out_shopper_is_recorded_and_sent_nothing(cloud: Engagement) -> None:
    cloud.campaign(id="half", holdout_share=0.5)
    shoppers = [register(cloud.client) for _ in range(12)]
    held = [s for s in shoppers if is_held_out(s.shopper_id, "half", 0.5)]
    treated = [s for s in shoppers if not is_held_out(s.shopper_id, "half", 0.5)]
    assert held and treated, "12 shoppers, 50 % holdout: both groups (p of failing 2^-11)"
    assert cloud.seen(held[0], NOW).notification is None
    assert cloud.seen(treated[0], NOW).notification is not None
    why = explain(cloud, "half", held[0].shopper_id)
    assert why["decisions"][0]["outcome"] == "held_out"
    assert "holdout" in why["summary"]
    assert cloud.rows(Offer, Offer.shopper_id == held[0].shopper_id) == []


def test_the_budget_stops_the_campaign_across_shoppers(cloud: Engagement) -> None:
    cloud.campaign(id="first-two", limits={"budget_offers": 2})
    outcomes = [cloud.seen(register(cloud.client), NOW).notification for _ in range(3)]
    assert [o is not None for o in outcomes] == [True, True, False]
    decisions = cloud.rows(CampaignDecision, CampaignDecision.outcome == "ineligible")
    assert [[c["name"] for c in d.checks if not c["passed"]] for d in decisions] == [["budget"]]


def test_a_dwell_in_the_zone_of_a_cart_item_earns_an_offer_on_those_items(
    cloud: Engagement,
) -> None:
    cloud.campaign(
        id="shoe-wall",
        trigger={"kind": "dwell", "dwell_s": 60, "zone": "shoes"},
        conditions={"zone_categories": {"shoes": "shoes"}, "cart_min_age_s": 3600},
        reward={"kind": "percent", "value": "25", "applies_to": "matching_items"},
    )
    alice = register(cloud.client)
    cloud.cart(alice, NOW - timedelta(hours=5))
    assert cloud.seen(alice, NOW - timedelta(seconds=30), zone="shoes").notification is None
    early = cloud.seen(alice, NOW, PresenceKind.DWELL, zone="shoes", dwell_s=30)
    assert early.notification is None
    outcome = cloud.seen(
        alice, NOW + timedelta(seconds=40), PresenceKind.DWELL, zone="shoes", dwell_s=70
    )
    assert outcome.notification is not None
    assert [item.sku for item in outcome.notification.items] == ["SHOE-042"]
    assert outcome.notification.message == "Welcome back! 25% off the 1 item in your cart."


def test_the_third_visit_in_a_month_earns_the_offer(cloud: Engagement) -> None:
    cloud.campaign(id="third", trigger={"kind": "visits", "visits": 3, "days": 30})
    alice = register(cloud.client)
    days_ago = [65, 25, 15]
    for days in days_ago:
        visit = NOW - timedelta(days=days)
        # The campaign decides on every visit; only the third within 30 days passes.
        cloud.seen(alice, visit)
        cloud.seen(alice, visit + timedelta(minutes=5), PresenceKind.EXIT, dwell_s=300)
    assert cloud.rows(Offer) == []
    assert cloud.seen(alice, NOW).notification is not None
    reasons = [
        d["checks"][2]["reason"] for d in explain(cloud, "third", alice.shopper_id)["decisions"]
    ]
    assert reasons[0] == "3 visits in 30 days, needs 3"
    assert reasons[1] == "2 visits in 30 days, needs 3"


def test_a_segment_condition_uses_the_shoppers_loyalty_segment(cloud: Engagement) -> None:
    cloud.campaign(id="loyal-only", conditions={"segments": ["loyal"]})
    alice = register(cloud.client)
    assert cloud.seen(alice, NOW).notification is None
    why = explain(cloud, "loyal-only", alice.shopper_id)
    assert why["decisions"][0]["failed"] == ["segment"]
    assert "segment new" in why["summary"]


def test_without_consent_there_is_no_decision_and_explain_says_why(cloud: Engagement) -> None:
    cloud.campaign(id="welcome")
    bob = register(cloud.client, personal_offers=False)
    assert cloud.seen(bob, NOW).notification is None
    why = explain(cloud, "welcome", bob.shopper_id)
    assert why["decisions"] == []
    assert why["summary"] == "no decision: the shopper has not agreed to personal offers"


def test_the_default_campaign_applies_while_none_is_defined(cloud: Engagement) -> None:
    alice = register(cloud.client)
    cloud.cart(alice, NOW - timedelta(hours=2))
    outcome = cloud.seen(alice, NOW)
    assert outcome.notification is not None
    assert outcome.notification.campaign_id == "abandoned-cart"
    assert [v.campaign_id for v in outcome.verdicts] == ["abandoned-cart"]
