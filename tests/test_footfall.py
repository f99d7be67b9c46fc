"""Footfall statistics as pure functions: thresholds, comparisons, bounds, buckets, heatmap."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from cloud_api.stats.footfall import (
    Capture,
    StayThresholds,
    VisitFact,
    ZoneStay,
    dwell_distribution,
    occupancy,
    peak_hours,
    subject_key,
    visitor_summary,
    visits_by_hour,
    zone_heatmap,
)

RULES = StayThresholds(min_store_stay_s=60, min_zone_stay_s=30)
UTC_ZONE = ZoneInfo("UTC")
ROME = ZoneInfo("Europe/Rome")
DAY = date(2026, 11, 24)  # a Tuesday


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def visit(
    subject: str,
    start: datetime,
    dwell_s: float,
    *,
    identified: bool = False,
    open_: bool = False,
    zones: frozenset[str] = frozenset(),
) -> VisitFact:
    last = start + timedelta(seconds=dwell_s)
    return VisitFact(
        subject=subject,
        identified=identified,
        started_at=start,
        last_seen_at=last,
        ended_at=None if open_ else last,
        present_zones=zones,
    )


def test_subject_keys_say_which_identities_hold_across_days() -> None:
    assert subject_key("app", "tok-1", "shopper-9") == ("shopper:shopper-9", True)
    assert subject_key("wearable", "wear-1", None) == ("wearable:wear-1", True)
    assert subject_key("anonymous", "anon-1", None) == ("anonymous:anon-1", False)
    assert subject_key("app", "tok-unknown", None) == ("app:tok-unknown", False)


def test_occupancy_counts_open_recent_visits_per_zone_and_keeps_empty_zones() -> None:
    now = at(DAY, 12)
    visits = [
        visit("a", now - timedelta(minutes=5), 290, open_=True, zones=frozenset({"entrance"})),
        visit("b", now - timedelta(minutes=5), 280, open_=True, zones=frozenset({"racks"})),
        visit("c", now - timedelta(minutes=5), 280, open_=True, zones=frozenset({"racks"})),
        # Ended, and open but silent for an hour: neither is in the store now.
        visit("d", now - timedelta(minutes=5), 200, zones=frozenset()),
        visit("e", now - timedelta(hours=2), 60, open_=True, zones=frozenset({"racks"})),
    ]
    result = occupancy(visits, now, idle_timeout_s=1800, zones=["fitting-rooms"])
    assert result.in_store == 3
    assert result.zones == {"entrance": 1, "fitting-rooms": 0, "racks": 2}


def test_visits_per_hour_compare_today_with_the_same_weekday_of_four_weeks() -> None:
    visits = [
        visit("a", at(DAY, 10, 5), 600),
        visit("b", at(DAY, 10, 40), 120),
        visit("short", at(DAY, 10, 50), 30),  # under a minute: not a visit
        visit("c", at(DAY - timedelta(weeks=1), 10, 10), 300),
        visit("d", at(DAY - timedelta(weeks=4), 10, 10), 300),
        visit("e", at(DAY - timedelta(weeks=4), 11, 10), 300),
        visit("f", at(DAY - timedelta(days=1), 10, 10), 300),  # another weekday
        visit("g", at(DAY - timedelta(weeks=5), 10, 10), 300),  # too long ago
    ]
    hours = {h.hour: h for h in visits_by_hour(visits, DAY, UTC_ZONE, RULES)}
    assert len(hours) == 24
    assert hours[10].today == 2
    assert hours[10].weeks_ago == (1, 0, 0, 1)
    assert hours[10].average == 0.5
    assert hours[11].today == 0 and hours[11].weeks_ago == (0, 0, 0, 1)


def test_visits_per_hour_use_the_local_hour() -> None:
    # 09:30 UTC is 10:30 in Rome in November.
    hours = visits_by_hour([visit("a", at(DAY, 9, 30), 300)], DAY, ROME, RULES)
    assert [h.hour for h in hours if h.today] == [10]


def test_returning_visitors_are_exact_for_identified_and_bounded_for_anonymous() -> None:
    period = [
        visit("shopper:1", at(DAY, 10), 600, identified=True),
        visit("shopper:1", at(DAY, 15), 600, identified=True),  # same visitor, counted once
        visit("shopper:2", at(DAY, 11), 600, identified=True),
        visit("anonymous:x", at(DAY, 12), 600),
        visit("anonymous:y", at(DAY, 12), 600),
        visit("anonymous:z", at(DAY, 12), 10),  # too short to be a visitor
    ]
    earlier = [
        visit("shopper:1", at(DAY - timedelta(days=3), 10), 600, identified=True),
        # Anonymous pseudonyms cannot be recognised on a later day, even if one repeats.
        visit("anonymous:x", at(DAY - timedelta(days=3), 10), 600),
    ]
    summary = visitor_summary(period, earlier, RULES)
    assert summary.visits == 5
    assert summary.unique_visitors == 4
    assert summary.identified_visitors == 2
    assert summary.anonymous_visitors == 2
    assert summary.returning_identified == 1
    assert summary.returning_rate_identified == 0.5
    assert summary.returning_rate_lower == 0.25
    assert summary.returning_rate_upper == 0.75


def test_no_visitors_give_no_rates() -> None:
    summary = visitor_summary([], [], RULES)
    assert summary.unique_visitors == 0
    assert summary.returning_rate_identified is None
    assert summary.returning_rate_lower is None
    assert summary.returning_rate_upper is None


def test_dwell_distribution_starts_at_the_minimum_stay() -> None:
    visits = [visit(str(i), at(DAY, 10), dwell) for i, dwell in enumerate([30, 90, 100, 400, 4000])]
    result = dwell_distribution(visits, RULES)
    assert [(b.from_s, b.to_s, b.visits) for b in result.buckets] == [
        (60, 120, 2),
        (120, 300, 0),
        (300, 600, 1),
        (600, 1200, 0),
        (1200, 1800, 0),
        (1800, 3600, 0),
        (3600, None, 1),
    ]
    assert result.median_s == 100
    assert result.p90_s == 4000
    assert result.mean_s == (90 + 100 + 400 + 4000) / 4


def test_dwell_buckets_follow_a_higher_minimum() -> None:
    result = dwell_distribution([], StayThresholds(min_store_stay_s=200, min_zone_stay_s=0))
    assert result.buckets[0].from_s == 200 and result.buckets[0].to_s == 300
    assert result.median_s is None


def test_zone_heatmap_leaves_out_short_zone_stays() -> None:
    stays = [
        ZoneStay("racks", at(DAY, 10, 5), 120),
        ZoneStay("racks", at(DAY, 10, 50), 60),
        ZoneStay("racks", at(DAY, 10, 55), 10),  # a walk through
        ZoneStay("entrance", at(DAY, 11, 1), 45),
    ]
    cells = zone_heatmap(stays, UTC_ZONE, RULES)
    assert [(c.zone_id, c.hour, c.stays, c.dwell_s) for c in cells] == [
        ("entrance", 11, 1, 45),
        ("racks", 10, 2, 180),
    ]


def test_peak_hours_average_per_weekday_busiest_first() -> None:
    tuesday, wednesday = DAY, DAY + timedelta(days=1)
    visits = [
        visit("a", at(tuesday, 17), 300),
        visit("b", at(tuesday, 17, 30), 300),
        visit("c", at(tuesday + timedelta(weeks=1), 17), 300),
        visit("d", at(wednesday, 9), 300),
        visit("e", at(wednesday, 9, 5), 20),  # too short
    ]
    rows = peak_hours(visits, DAY, DAY + timedelta(days=14), UTC_ZONE, RULES)
    assert [(r.weekday, r.hour, r.visits, r.days) for r in rows] == [(1, 17, 3, 2), (2, 9, 1, 2)]
    assert rows[0].average == 1.5


def test_capture_rate() -> None:
    assert Capture(entered=30, passed_by=90).rate == 0.25
    assert Capture(entered=0, passed_by=0).rate is None
