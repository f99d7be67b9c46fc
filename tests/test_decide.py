"""The campaign decision, rule by rule: pure, so every case is a call with facts and a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cloud_api.match.campaigns import (
    DEMO_CAMPAIGNS_FILE,
    CampaignSpec,
    default_campaign,
    load_campaign_file,
)
from cloud_api.match.decide import (
    CartFacts,
    CartLine,
    Moment,
    Outcome,
    PastDecision,
    ShopperFacts,
    Verdict,
    decide,
    is_held_out,
    offered,
)
from cloud_api.shoppers.loyalty import Segment
from storelink.wire import PresenceKind

# Far from the wall clock on purpose: the decision depends on the event's time only.
TS = datetime(2031, 3, 14, 15, 9, 26, tzinfo=UTC)
SHOES = CartLine("SHOE-042", "Trail runners", "shoes", Decimal("89.90"), 1)
SOCKS = CartLine("SOCK-007", "Merino socks", "accessories", Decimal("12.50"), 2)


def spec(**fields: Any) -> CampaignSpec:
    data: dict[str, Any] = {"id": "c1", "name": "Campaign one", "reward": {"value": "10"}}
    data.update(fields)
    return CampaignSpec.model_validate(data)


def cart(
    age: timedelta = timedelta(hours=2),
    *,
    cart_id: str = "cart-1",
    items: tuple[CartLine, ...] = (SHOES, SOCKS),
    status: str = "open",
) -> CartFacts:
    return CartFacts(cart_id, items, "EUR", status, TS - age)


def moment(
    kind: PresenceKind = PresenceKind.ENTER,
    *,
    zone: str = "entrance",
    dwell_s: float = 0.0,
    at: datetime = TS,
    store: str = "store-1",
) -> Moment:
    return Moment("01EVENT", store, zone, kind, dwell_s, at, at - timedelta(seconds=dwell_s))


def shopper(**fields: Any) -> ShopperFacts:
    data: dict[str, Any] = {"shopper_id": "shp_alice", "personal_offers": True}
    data.update(fields)
    return ShopperFacts(**data)


def one(
    campaign: CampaignSpec,
    *,
    at: Moment | None = None,
    who: ShopperFacts | None = None,
    budget: dict[str, int] | None = None,
    daily_cap: int | None = None,
) -> Verdict:
    verdicts = decide(at or moment(), who or shopper(), [campaign], budget or {}, daily_cap)
    assert len(verdicts) == 1
    return verdicts[0]


def failed(verdict: Verdict) -> list[str]:
    return [check.name for check in verdict.failed]


def test_a_plain_enter_campaign_offers_and_explains_every_check() -> None:
    verdict = one(spec())
    assert verdict.outcome == Outcome.OFFERED
    assert [c.name for c in verdict.checks] == [
        "schedule",
        "store",
        "trigger",
        "consent",
        "segment",
        "one_per_event",
    ]
    assert all(c.passed and c.reason for c in verdict.checks)
    assert verdict.terms is not None
    assert verdict.terms.percent_off == Decimal("10")
    assert verdict.terms.expires_at == TS + timedelta(hours=2)
    assert verdict.terms.items == ()
    assert verdict.terms.message == "Welcome! 10% off your shopping today."


def test_the_same_facts_give_the_same_verdict() -> None:
    campaign = spec(holdout_share=0.5, conditions={"cart_min_age_s": 60})
    who = shopper(carts=[cart()])
    assert one(campaign, who=who) == one(campaign, who=who)


def test_a_campaign_edited_under_the_same_id_is_decided_as_it_is_now() -> None:
    """What the decision works out once per campaign must follow the campaign, not its id."""
    before = spec(conditions={"cart_min_age_s": 60}, limits={"budget_offers": 5})
    who = shopper(carts=[cart(timedelta(minutes=30))])
    assert one(before, who=who, budget={"c1": 1}).outcome == Outcome.OFFERED
    after = spec(conditions={"cart_min_age_s": 3600}, limits={"budget_offers": 1})
    verdict = one(after, who=who, budget={"c1": 1})
    assert failed(verdict) == ["cart_age", "budget"]
    assert [c.reason for c in verdict.failed] == ["0 abandoned for >= 3600 s", "1 of 1 offers made"]
    assert one(before, who=who, budget={"c1": 1}).outcome == Outcome.OFFERED


def test_without_consent_nothing_is_offered() -> None:
    verdict = one(spec(), who=shopper(personal_offers=False))
    assert verdict.outcome == Outcome.INELIGIBLE
    assert failed(verdict) == ["consent"]
    assert verdict.terms is None


def test_an_exit_triggers_nothing() -> None:
    verdict = one(spec(), at=moment(PresenceKind.EXIT, dwell_s=30))
    assert failed(verdict) == ["trigger"]
    assert "exit" in verdict.checks[2].reason


def test_an_enter_trigger_can_name_its_zone() -> None:
    campaign = spec(trigger={"kind": "enter", "zone": "shoes"})
    assert one(campaign, at=moment(zone="shoes")).outcome == Outcome.OFFERED
    verdict = one(campaign, at=moment(zone="entrance"))
    assert failed(verdict) == ["trigger"]
    assert "not shoes" in verdict.failed[0].reason


@pytest.mark.parametrize(
    ("dwell_s", "outcome"), [(119.0, Outcome.INELIGIBLE), (120.0, Outcome.OFFERED)]
)
def test_a_dwell_trigger_needs_its_seconds(dwell_s: float, outcome: Outcome) -> None:
    campaign = spec(trigger={"kind": "dwell", "dwell_s": 120, "zone": "shoes"})
    assert (
        one(campaign, at=moment(PresenceKind.DWELL, zone="shoes", dwell_s=dwell_s)).outcome
        == outcome
    )


def test_a_dwell_trigger_ignores_enters() -> None:
    campaign = spec(trigger={"kind": "dwell", "dwell_s": 120})
    assert failed(one(campaign)) == ["trigger"]


def test_the_third_visit_in_a_month_triggers() -> None:
    campaign = spec(trigger={"kind": "visits", "visits": 3, "days": 30})
    old = TS - timedelta(days=31)
    two = [TS - timedelta(days=10), TS]
    assert failed(one(campaign, who=shopper(visit_starts=[old, *two]))) == ["trigger"]
    three = [TS - timedelta(days=29), *two]
    verdict = one(campaign, who=shopper(visit_starts=three))
    assert verdict.outcome == Outcome.OFFERED
    assert "3 visits in 30 days" in verdict.checks[2].reason


def test_a_campaign_runs_only_in_its_stores() -> None:
    campaign = spec(store_ids=["store-2"])
    assert failed(one(campaign)) == ["store"]
    assert one(campaign, at=moment(store="store-2")).outcome == Outcome.OFFERED


def test_schedule_start_end_and_pause() -> None:
    starts = spec(limits={"starts_at": (TS + timedelta(seconds=1)).isoformat()})
    assert failed(one(starts)) == ["schedule"]
    ended = spec(limits={"ends_at": TS.isoformat()})
    assert failed(one(ended)) == ["schedule"]
    running = spec(
        limits={"starts_at": TS.isoformat(), "ends_at": (TS + timedelta(days=1)).isoformat()}
    )
    assert one(running).outcome == Outcome.OFFERED
    assert failed(one(spec(active=False))) == ["schedule"]


def test_loyalty_segment_condition() -> None:
    campaign = spec(conditions={"segments": ["at_risk", "loyal"]})
    assert one(campaign, who=shopper(segment=Segment.LOYAL)).outcome == Outcome.OFFERED
    verdict = one(campaign, who=shopper(segment=Segment.NEW))
    assert failed(verdict) == ["segment"]
    assert "segment new" in verdict.failed[0].reason


@pytest.mark.parametrize(
    ("age", "ok"),
    [
        (timedelta(minutes=59), False),
        (timedelta(hours=1), True),
        (timedelta(days=7), True),
        (timedelta(days=7, seconds=1), False),
    ],
)
def test_abandoned_cart_age_window(age: timedelta, ok: bool) -> None:
    campaign = spec(conditions={"cart_min_age_s": 3600, "cart_max_age_s": 7 * 86400})
    verdict = one(campaign, who=shopper(carts=[cart(age)]))
    assert (verdict.outcome == Outcome.OFFERED) is ok
    if not ok:
        assert failed(verdict) == ["cart_age"]


def test_an_ordered_or_empty_cart_is_not_abandoned() -> None:
    campaign = spec(conditions={"cart_min_age_s": 3600})
    carts = [cart(status="ordered"), cart(cart_id="cart-2", items=())]
    verdict = one(campaign, who=shopper(carts=carts))
    assert failed(verdict) == ["cart", "cart_age"]


def test_a_cart_updated_after_the_event_is_not_abandoned() -> None:
    campaign = spec(conditions={"cart_min_age_s": 0})
    assert failed(one(campaign, who=shopper(carts=[cart(-timedelta(seconds=1))]))) == [
        "cart",
        "cart_age",
    ]


@pytest.mark.parametrize(
    ("low", "high", "ok"), [("100", "200", True), ("120", None, False), ("0", "114", False)]
)
def test_cart_value_range(low: str, high: str | None, ok: bool) -> None:
    # 89.90 + 2 x 12.50 = 114.90
    campaign = spec(conditions={"cart_min_value": low, "cart_max_value": high})
    verdict = one(campaign, who=shopper(carts=[cart()]))
    assert (verdict.outcome == Outcome.OFFERED) is ok
    assert ok or failed(verdict) == ["cart_value"]


def test_zone_category_must_match_a_cart_item_and_the_reward_can_cover_only_those() -> None:
    campaign = spec(
        trigger={"kind": "dwell", "dwell_s": 60},
        conditions={"zone_categories": {"shoe-wall": "shoes", "tills": "snacks"}},
        reward={"kind": "amount", "value": "15", "applies_to": "matching_items", "min_spend": "50"},
    )
    who = shopper(carts=[cart()])
    verdict = one(campaign, at=moment(PresenceKind.DWELL, zone="shoe-wall", dwell_s=90), who=who)
    assert verdict.outcome == Outcome.OFFERED
    assert verdict.terms is not None
    assert verdict.terms.items == (SHOES,)
    assert verdict.terms.amount_off == Decimal("15")
    assert verdict.terms.percent_off is None
    assert verdict.terms.min_spend == Decimal("50")
    assert verdict.terms.message == "Welcome back! 15 EUR off the 1 item in your cart."
    snacks = one(campaign, at=moment(PresenceKind.DWELL, zone="tills", dwell_s=90), who=who)
    assert failed(snacks) == ["zone_category"]
    nowhere = one(campaign, at=moment(PresenceKind.DWELL, zone="lobby", dwell_s=90), who=who)
    assert "has no category" in nowhere.failed[0].reason


def test_the_most_recently_touched_qualifying_cart_is_chosen() -> None:
    campaign = spec(conditions={"cart_min_age_s": 3600})
    carts = [
        cart(timedelta(hours=30), cart_id="old"),
        cart(timedelta(hours=3), cart_id="new"),
        cart(timedelta(minutes=5), cart_id="live"),
    ]
    assert one(campaign, who=shopper(carts=carts)).cart_id == "new"


def test_cart_cooldown_is_per_cart_and_ends() -> None:
    campaign = spec(conditions={"cart_min_age_s": 3600}, limits={"cart_cooldown_s": 86400})
    carts = [cart(cart_id="a"), cart(timedelta(hours=3), cart_id="b")]
    recent = [PastDecision("c1", TS - timedelta(hours=23), "a")]
    assert one(campaign, who=shopper(carts=carts, past=recent)).cart_id == "b"
    both = [*recent, PastDecision("c1", TS - timedelta(hours=1), "b")]
    assert failed(one(campaign, who=shopper(carts=carts, past=both))) == ["cart_cooldown"]
    # Another campaign's offer on the cart does not count; neither does one a day ago.
    other = [PastDecision("c2", TS, "a"), PastDecision("c1", TS - timedelta(days=1), "b")]
    assert one(campaign, who=shopper(carts=carts, past=other)).outcome == Outcome.OFFERED


def test_daily_cap_counts_every_campaign() -> None:
    past = [PastDecision("other", TS - timedelta(hours=23))]
    verdict = one(spec(), who=shopper(past=past), daily_cap=1)
    assert failed(verdict) == ["daily_cap"]
    assert one(spec(), who=shopper(past=past), daily_cap=2).outcome == Outcome.OFFERED
    yesterday = [PastDecision("other", TS - timedelta(hours=24))]
    assert one(spec(), who=shopper(past=yesterday), daily_cap=1).outcome == Outcome.OFFERED


def test_weekly_cap_counts_this_campaign_only() -> None:
    campaign = spec(limits={"per_shopper_per_week": 1})
    past = [PastDecision("c1", TS - timedelta(days=6))]
    assert failed(one(campaign, who=shopper(past=past))) == ["weekly_cap"]
    others = [
        PastDecision("c2", TS - timedelta(days=1)),
        PastDecision("c1", TS - timedelta(days=7)),
    ]
    assert one(campaign, who=shopper(past=others)).outcome == Outcome.OFFERED


@pytest.mark.parametrize(
    ("utc_hour", "quiet"),
    [(20, False), (21, True), (4, True), (5, False)],
)
def test_quiet_hours_span_midnight_in_the_campaign_time_zone(utc_hour: int, quiet: bool) -> None:
    # Paris in March is UTC+1: quiet 22:00-06:00 local is 21:00-05:00 UTC.
    campaign = spec(
        limits={"quiet_start": "22:00", "quiet_end": "06:00", "timezone": "Europe/Paris"}
    )
    at = TS.replace(hour=utc_hour, minute=0)
    verdict = one(campaign, at=moment(at=at))
    assert (failed(verdict) == ["quiet_hours"]) is quiet


def test_budget_counts_offers_made() -> None:
    campaign = spec(limits={"budget_offers": 3})
    assert one(campaign, budget={"c1": 2}).outcome == Outcome.OFFERED
    verdict = one(campaign, budget={"c1": 3})
    assert failed(verdict) == ["budget"]
    assert "3 of 3" in verdict.failed[0].reason


def test_holdout_is_deterministic_and_near_its_share() -> None:
    shoppers = [f"shp_{n:05d}" for n in range(20000)]
    held = [s for s in shoppers if is_held_out(s, "c1", 0.1)]
    assert 0.09 < len(held) / len(shoppers) < 0.11
    assert held == [s for s in shoppers if is_held_out(s, "c1", 0.1)]
    # Another campaign holds out other shoppers.
    assert set(held) != {s for s in shoppers if is_held_out(s, "c2", 0.1)}
    assert not any(is_held_out(s, "c1", 0.0) for s in shoppers[:100])


def test_a_held_out_shopper_is_recorded_and_gets_nothing() -> None:
    campaign = spec(holdout_share=0.1)
    sid = next(f"shp_{n}" for n in range(1000) if is_held_out(f"shp_{n}", "c1", 0.1))
    verdict = one(campaign, who=shopper(shopper_id=sid))
    assert verdict.outcome == Outcome.HELD_OUT
    assert verdict.terms is None
    assert verdict.checks[-1].name == "holdout"


def test_one_offer_per_event_highest_priority_first() -> None:
    low = spec(id="low", priority=1)
    high = spec(id="high", priority=5)
    verdicts = decide(moment(), shopper(), [low, high], {}, None)
    assert [v.campaign_id for v in verdicts] == ["high", "low"]
    chosen = offered(verdicts)
    assert chosen is not None and chosen.campaign_id == "high"
    assert failed(verdicts[1]) == ["one_per_event"]


def test_a_holdout_counts_for_the_daily_cap_of_later_campaigns() -> None:
    sid = next(f"shp_{n}" for n in range(1000) if is_held_out(f"shp_{n}", "a", 0.5))
    first = spec(id="a", priority=2, holdout_share=0.5)
    verdicts = decide(moment(), shopper(shopper_id=sid), [first, spec(id="b")], {}, 1)
    assert [v.outcome for v in verdicts] == [Outcome.HELD_OUT, Outcome.INELIGIBLE]
    assert set(failed(verdicts[1])) == {"one_per_event", "daily_cap"}


def test_the_default_campaign_is_the_old_abandoned_cart_offer() -> None:
    campaign = default_campaign(3600, Decimal("10"), 7200, 86400)
    verdict = one(campaign, who=shopper(carts=[cart(timedelta(hours=1))]))
    assert verdict.outcome == Outcome.OFFERED
    assert verdict.terms is not None
    assert verdict.terms.items == (SHOES, SOCKS)
    assert verdict.terms.message == "Welcome back! 10% off the 3 items in your cart."
    too_fresh = one(campaign, who=shopper(carts=[cart(timedelta(minutes=59))]))
    # The first cart condition that leaves no cart fails, and those after it find none either.
    assert failed(too_fresh) == ["cart_age", "cart_cooldown"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"trigger": {"kind": "dwell"}}, "needs dwell_s"),
        ({"trigger": {"kind": "visits", "visits": 3}}, "needs visits and days"),
        ({"reward": {"value": "150"}}, "at most 100"),
        ({"limits": {"quiet_start": "22:00"}}, "both quiet_start"),
        ({"limits": {"quiet_start": "25:00", "quiet_end": "06:00"}}, "HH:MM"),
        ({"limits": {"timezone": "Mars/Olympus"}}, "unknown time zone"),
        ({"reward": {"value": "5", "applies_to": "matching_items"}}, "zone_categories"),
        ({"holdout_share": 1}, "less than 1"),
        ({"id": "Bad Id"}, "pattern"),
    ],
)
def test_invalid_campaigns_are_refused_with_the_reason(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        spec(**fields)


def test_the_demo_campaigns_file_loads(tmp_path: Path) -> None:
    campaigns = load_campaign_file(DEMO_CAMPAIGNS_FILE)
    assert len({c.id for c in campaigns}) == len(campaigns) >= 3
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "campaigns:\n"
        "  - {id: a, name: A, reward: {value: 5}}\n"
        "  - {id: a, name: B, reward: {value: 5}}\n"
    )
    with pytest.raises(ValueError, match="defined twice: a"):
        load_campaign_file(broken)
