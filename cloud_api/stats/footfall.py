"""Footfall statistics: pure functions over visits and zone stays, no I/O.

The routes (``cloud_api.routes.footfall``) load the rows and hand them here; the dashboard and
any other tool read the same numbers from ``/v1/stats/...``.

Short stays are not visits: a visit counts once it lasted ``min_store_stay_s`` (someone who
stepped in and out again, or a phone carried past the door, is not a visitor), and a zone stay
once it lasted ``min_zone_stay_s``. An open visit counts with its duration so far.

Returning visitors and address randomisation: phones change their Bluetooth address every
few minutes, so a gateway can only follow a device across days when it knows who it is. A
shopper recognised by the app's rotating token (resolved to the shopper by the cloud), a
wearable resolved through its IRK, and a beacon tag have stable identities: whether they came
before is exact. Anonymous devices get a pseudonym from a key that changes daily, and a new one
whenever the address rotates, so none of them can be recognised on a later day. The returning
rate is therefore given as bounds over all visitors: the lower bound counts every anonymous
visitor as new, the upper bound as returning; the identified visitors' own rate is exact and
is the best estimate when they are like everybody else.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

# Subject types whose ref names the same device every day (see the module's description).
STABLE_SUBJECT_TYPES = frozenset({"wearable", "beacon"})

# Upper edges (seconds) of the dwell-time buckets; the last bucket is open-ended.
DWELL_BUCKET_EDGES_S = (120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)


@dataclass(frozen=True)
class VisitFact:
    """One visit as the statistics need it."""

    subject: str
    identified: bool
    started_at: datetime
    last_seen_at: datetime
    ended_at: datetime | None
    present_zones: frozenset[str]

    @property
    def dwell_s(self) -> float:
        return (self.last_seen_at - self.started_at).total_seconds()


def subject_key(subject_type: str, subject_ref: str, shopper_id: str | None) -> tuple[str, bool]:
    """The visitor a visit belongs to, and whether that identity holds across days."""
    if shopper_id is not None:
        return f"shopper:{shopper_id}", True
    return f"{subject_type}:{subject_ref}", subject_type in STABLE_SUBJECT_TYPES


@dataclass(frozen=True)
class ZoneStay:
    """A subject's completed stay in one zone (a gateway's exit event)."""

    zone_id: str
    ended_at: datetime
    dwell_s: float


@dataclass(frozen=True)
class StayThresholds:
    min_store_stay_s: float
    min_zone_stay_s: float


def counts_as_visit(visit: VisitFact, thresholds: StayThresholds) -> bool:
    return visit.dwell_s >= thresholds.min_store_stay_s


# --- occupancy ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Occupancy:
    in_store: int
    zones: dict[str, int]


def occupancy(
    visits: Iterable[VisitFact], now: datetime, idle_timeout_s: float, zones: Iterable[str] = ()
) -> Occupancy:
    """Who is in the store and in each zone now: open visits seen within ``idle_timeout_s``.

    Every zone of ``zones`` is reported, at 0 when empty, so an empty zone still shows.
    """
    per_zone: Counter[str] = Counter(dict.fromkeys(zones, 0))
    in_store = 0
    for visit in visits:
        if visit.ended_at is not None:
            continue
        if (now - visit.last_seen_at).total_seconds() > idle_timeout_s:
            continue
        in_store += 1
        per_zone.update(visit.present_zones)
    return Occupancy(in_store=in_store, zones=dict(sorted(per_zone.items())))


# --- visits per hour ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HourComparison:
    hour: int
    today: int
    weeks_ago: tuple[int, ...]

    @property
    def average(self) -> float:
        return sum(self.weeks_ago) / len(self.weeks_ago) if self.weeks_ago else 0.0


def visits_by_hour(
    visits: Iterable[VisitFact],
    day: date,
    tz: ZoneInfo,
    thresholds: StayThresholds,
    weeks: int = 4,
) -> list[HourComparison]:
    """Visits started in each local hour of ``day`` and of the same weekday 1..``weeks`` ago."""
    days = [day - timedelta(weeks=back) for back in range(weeks + 1)]
    counts: dict[date, Counter[int]] = {d: Counter() for d in days}
    for visit in visits:
        if not counts_as_visit(visit, thresholds):
            continue
        local = visit.started_at.astimezone(tz)
        if local.date() in counts:
            counts[local.date()][local.hour] += 1
    return [
        HourComparison(
            hour=hour,
            today=counts[day][hour],
            weeks_ago=tuple(counts[d][hour] for d in days[1:]),
        )
        for hour in range(24)
    ]


# --- visitors -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VisitorSummary:
    visits: int
    unique_visitors: int
    identified_visitors: int
    anonymous_visitors: int
    returning_identified: int

    @property
    def returning_rate_identified(self) -> float | None:
        """Exact, among the visitors whose identity holds across days."""
        if not self.identified_visitors:
            return None
        return self.returning_identified / self.identified_visitors

    @property
    def returning_rate_lower(self) -> float | None:
        """Every anonymous visitor counted as new."""
        if not self.unique_visitors:
            return None
        return self.returning_identified / self.unique_visitors

    @property
    def returning_rate_upper(self) -> float | None:
        """Every anonymous visitor counted as returning."""
        if not self.unique_visitors:
            return None
        return (self.returning_identified + self.anonymous_visitors) / self.unique_visitors


def visitor_summary(
    period: Iterable[VisitFact], earlier: Iterable[VisitFact], thresholds: StayThresholds
) -> VisitorSummary:
    """Unique and returning visitors of ``period``; ``earlier`` are the visits before it.

    A visitor counts once in the period, as returning when they are identified and had a
    visit before the period began.
    """
    counted = [visit for visit in period if counts_as_visit(visit, thresholds)]
    before = {
        visit.subject
        for visit in earlier
        if visit.identified and counts_as_visit(visit, thresholds)
    }
    identified = {visit.subject for visit in counted if visit.identified}
    anonymous = {visit.subject for visit in counted if not visit.identified}
    return VisitorSummary(
        visits=len(counted),
        unique_visitors=len(identified) + len(anonymous),
        identified_visitors=len(identified),
        anonymous_visitors=len(anonymous),
        returning_identified=len(identified & before),
    )


# --- dwell time ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DwellBucket:
    from_s: float
    to_s: float | None
    visits: int


@dataclass(frozen=True)
class DwellDistribution:
    buckets: tuple[DwellBucket, ...]
    median_s: float | None
    p90_s: float | None
    mean_s: float | None


def _quantile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank quantile of sorted values."""
    if not ordered:
        return None
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def dwell_distribution(
    visits: Iterable[VisitFact], thresholds: StayThresholds
) -> DwellDistribution:
    """How long visits lasted, in buckets from the minimum stay up; short stays left out."""
    dwells = sorted(v.dwell_s for v in visits if counts_as_visit(v, thresholds))
    lower = thresholds.min_store_stay_s
    edges = [edge for edge in DWELL_BUCKET_EDGES_S if edge > lower]
    bounds: list[tuple[float, float | None]] = []
    for edge in edges:
        bounds.append((lower, edge))
        lower = edge
    bounds.append((lower, None))
    buckets = tuple(
        DwellBucket(
            from_s=start,
            to_s=end,
            visits=sum(1 for d in dwells if d >= start and (end is None or d < end)),
        )
        for start, end in bounds
    )
    return DwellDistribution(
        buckets=buckets,
        median_s=_quantile(dwells, 0.5),
        p90_s=_quantile(dwells, 0.9),
        mean_s=sum(dwells) / len(dwells) if dwells else None,
    )


# --- zones --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZoneHour:
    zone_id: str
    hour: int
    stays: int
    dwell_s: float


def zone_heatmap(
    stays: Iterable[ZoneStay], tz: ZoneInfo, thresholds: StayThresholds
) -> list[ZoneHour]:
    """Zone stays and time spent per zone and local hour of the day (when the stay ended)."""
    cells: dict[tuple[str, int], list[float]] = defaultdict(list)
    for stay in stays:
        if stay.dwell_s < thresholds.min_zone_stay_s:
            continue
        cells[(stay.zone_id, stay.ended_at.astimezone(tz).hour)].append(stay.dwell_s)
    return [
        ZoneHour(zone_id=zone, hour=hour, stays=len(dwells), dwell_s=sum(dwells))
        for (zone, hour), dwells in sorted(cells.items())
    ]


# --- peak hours ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeakHour:
    weekday: int
    hour: int
    visits: int
    days: int

    @property
    def average(self) -> float:
        return self.visits / self.days if self.days else 0.0


def _weekdays_between(start: date, end: date) -> Counter[int]:
    """How many times each weekday (Monday 0) occurs in [start, end)."""
    days: Counter[int] = Counter()
    day = start
    while day < end:
        days[day.weekday()] += 1
        day += timedelta(days=1)
    return days


def peak_hours(
    visits: Iterable[VisitFact],
    start: date,
    end: date,
    tz: ZoneInfo,
    thresholds: StayThresholds,
) -> list[PeakHour]:
    """Average visits per weekday and local hour over the local days [start, end), busiest first.

    Hours with no visit at all are left out; ties keep calendar order.
    """
    counts: Counter[tuple[int, int]] = Counter()
    for visit in visits:
        if not counts_as_visit(visit, thresholds):
            continue
        local = visit.started_at.astimezone(tz)
        if start <= local.date() < end:
            counts[(local.weekday(), local.hour)] += 1
    days = _weekdays_between(start, end)
    rows = [
        PeakHour(weekday=weekday, hour=hour, visits=n, days=days[weekday])
        for (weekday, hour), n in sorted(counts.items())
    ]
    return sorted(rows, key=lambda row: -row.average)


# --- capture rate -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Capture:
    entered: int
    passed_by: int

    @property
    def rate(self) -> float | None:
        """Shoppers who came in among everyone who came by (in or past the window)."""
        total = self.entered + self.passed_by
        return self.entered / total if total else None
