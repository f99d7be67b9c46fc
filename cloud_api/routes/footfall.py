"""Footfall statistics of one store (``/v1/stats/...``): what the dashboard shows, for any tool.

Every endpoint is scoped to a store the caller may see, answers JSON by default and its table
as CSV with ``?format=csv``. Periods are local days (``tz``, an IANA zone name) from ``from`` to
``to``, both included; the figures themselves come from the pure functions of
``cloud_api.stats.footfall``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal, TypedDict, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from cloud_api.auth.auth import StoreStaffDep
from cloud_api.deps import ContextDep, SessionDep
from cloud_api.ingest.visits import VISIT_IDLE_TIMEOUT_S, presence_from_json
from cloud_api.stats import footfall
from cloud_api.stats.footfall import StayThresholds, VisitFact, ZoneStay
from cloud_api.stats.footfall_schemas import (
    BeaconHealthOut,
    CaptureOut,
    DwellBucketOut,
    DwellOut,
    GatewayHealthOut,
    HealthOut,
    HourRow,
    OccupancyOut,
    PeakHourOut,
    PeakHoursOut,
    StayRules,
    VisitorsOut,
    VisitsPerHourOut,
    ZoneHourOut,
    ZoneOccupancyOut,
    ZonesOut,
)
from cloud_api.store.models import (
    EXIT_EVENTS,
    BeaconHealthRow,
    GatewayStatusRow,
    GatewayTraffic,
    PresenceEventRow,
    Store,
    Visit,
    Zone,
)

router = APIRouter(prefix="/stats", tags=["stats"])

CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "JSON or CSV"}
}
# A gateway sends a status every heartbeat (30 s by default); silent for longer is not online.
GATEWAY_SILENT_AFTER_S = 180.0
# Below this a CR2032 or AA-powered beacon has weeks left: time to change the battery.
LOW_BATTERY_MV = 2500
RETURNING_METHOD = (
    "Identified visitors (shoppers recognised by the app's rotating token, IRK-resolved "
    "wearables, tags) are followed exactly across days. Anonymous phones randomise their address "
    "and get a daily pseudonym, so they are never recognised later: the lower bound counts them "
    "all as new, the upper bound all as returning, and the identified visitors' rate is the best "
    "estimate when they are like everyone else."
)

Format = Annotated[
    Literal["json", "csv"], Query(description="csv: the response's table as text/csv")
]
BodyT = TypeVar("BodyT", bound=BaseModel)


def _store(
    store_id: Annotated[str, Query(description="the store; 403 outside the caller's stores")],
    _staff: StoreStaffDep,
) -> str:
    return store_id


StoreId = Annotated[str, Depends(_store)]


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise HTTPException(
            422, f"tz: unknown time zone {name!r} (an IANA name, e.g. Europe/Rome)"
        ) from None


@dataclass(frozen=True)
class LocalTime:
    name: str
    zone: ZoneInfo


def _local(
    store_id: str,
    session: SessionDep,
    tz: Annotated[
        str | None,
        Query(description="IANA time zone of the local days and hours (default: the store's)"),
    ] = None,
) -> LocalTime:
    name = tz or session.scalar(sa.select(Store.timezone).where(Store.id == store_id)) or "UTC"
    return LocalTime(name, _zone(name))


Local = Annotated[LocalTime, Depends(_local)]
From = Annotated[
    date | None, Query(alias="from", description="first local day (default: 6 days before to)")
]
To = Annotated[
    date | None, Query(alias="to", description="last local day, included (default: today)")
]
MinStoreStay = Annotated[
    float | None,
    Query(ge=0, description="shorter stays in the store are not visits (default: the setting)"),
]
MinZoneStay = Annotated[
    float | None,
    Query(ge=0, description="shorter stays in a zone are not zone visits (default: the setting)"),
]


def _rules(
    context: ContextDep, min_store_stay_s: MinStoreStay = None, min_zone_stay_s: MinZoneStay = None
) -> StayThresholds:
    settings = context.settings
    return StayThresholds(
        min_store_stay_s=settings.min_store_stay_s
        if min_store_stay_s is None
        else min_store_stay_s,
        min_zone_stay_s=settings.min_zone_stay_s if min_zone_stay_s is None else min_zone_stay_s,
    )


Rules = Annotated[StayThresholds, Depends(_rules)]


def _rules_out(rules: StayThresholds) -> StayRules:
    return StayRules(min_store_stay_s=rules.min_store_stay_s, min_zone_stay_s=rules.min_zone_stay_s)


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tz).astimezone(UTC)


class PeriodFields(TypedDict):
    """What every period's body says it is about."""

    store_id: str
    start: date
    end: date
    timezone: str
    rules: StayRules


@dataclass(frozen=True)
class Period:
    """A store's local days from ``start`` to ``end``, both included, under the stay rules."""

    store_id: str
    local: LocalTime
    rules: StayThresholds
    start: date
    end: date

    @property
    def since(self) -> datetime:
        return _local_midnight(self.start, self.local.zone)

    @property
    def until(self) -> datetime:
        return _local_midnight(self.end + timedelta(days=1), self.local.zone)

    def fields(self) -> PeriodFields:
        return PeriodFields(
            store_id=self.store_id,
            start=self.start,
            end=self.end,
            timezone=self.local.name,
            rules=_rules_out(self.rules),
        )

    def filename(self, table: str) -> str:
        return f"{table}-{self.store_id}-{self.start}-{self.end}"


def _period(
    store_id: StoreId, local: Local, rules: Rules, start: From = None, end: To = None
) -> Period:
    end = end or datetime.now(local.zone).date()
    start = start or end - timedelta(days=6)
    if start > end:
        raise HTTPException(422, f"from ({start}) is after to ({end})")
    if (end - start).days > 366:
        raise HTTPException(422, "a period spans at most 366 days")
    return Period(store_id, local, rules, start, end)


PeriodDep = Annotated[Period, Depends(_period)]


def _csv(rows: Sequence[BaseModel], name: str) -> Response:
    out = io.StringIO()
    writer: csv.DictWriter[str] | None = None
    for row in rows:
        record = row.model_dump(mode="json")
        if writer is None:
            writer = csv.DictWriter(out, fieldnames=list(record), lineterminator="\n")
            writer.writeheader()
        writer.writerow(record)
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


@dataclass(frozen=True)
class Answer:
    """The endpoint's body as JSON, or its table as a CSV download (``?format=csv``)."""

    as_csv: bool

    def __call__(self, body: BodyT, table: Sequence[BaseModel], name: str) -> BodyT | Response:
        return _csv(table, name) if self.as_csv else body


def _answer(format: Format = "json") -> Answer:
    return Answer(as_csv=format == "csv")


AnswerDep = Annotated[Answer, Depends(_answer)]


# Only the columns the statistics read: a period can hold hundreds of thousands of visits.
VISIT_COLUMNS = (
    Visit.subject_type,
    Visit.subject_ref,
    Visit.shopper_id,
    Visit.started_at,
    Visit.last_seen_at,
    Visit.ended_at,
)


def _fact(row: sa.Row[*tuple[Any, ...]], present: Iterable[str] = ()) -> VisitFact:
    subject, identified = footfall.subject_key(row.subject_type, row.subject_ref, row.shopper_id)
    return VisitFact(
        subject=subject,
        identified=identified,
        started_at=row.started_at,
        last_seen_at=row.last_seen_at,
        ended_at=row.ended_at,
        present_zones=frozenset(present),
    )


def _visits(session: Session, store_id: str, since: datetime, until: datetime) -> list[VisitFact]:
    rows = session.execute(
        sa.select(*VISIT_COLUMNS).where(
            Visit.store_id == store_id, Visit.started_at >= since, Visit.started_at < until
        )
    )
    return [_fact(row) for row in rows]


def _period_visits(session: Session, period: Period) -> list[VisitFact]:
    return _visits(session, period.store_id, period.since, period.until)


def _present_zones(presence: dict[str, Any]) -> set[str]:
    # Keys are "zone/ref" (see cloud_api.ingest.visits); ids never contain "/".
    return {key.split("/", 1)[0] for key, (_, here) in presence_from_json(presence).items() if here}


@router.get("/occupancy", response_model=OccupancyOut, responses=CSV_RESPONSE)
def occupancy(store_id: StoreId, session: SessionDep, answer: AnswerDep) -> OccupancyOut | Response:
    """Subjects in the store and in each zone now (open visits seen within the idle timeout)."""
    now = datetime.now(UTC)
    idle = timedelta(seconds=VISIT_IDLE_TIMEOUT_S)
    rows = session.execute(
        sa.select(*VISIT_COLUMNS, Visit.presence).where(
            Visit.store_id == store_id, Visit.ended_at.is_(None), Visit.last_seen_at >= now - idle
        )
    )
    facts = [_fact(row, _present_zones(row.presence)) for row in rows]
    zones = session.scalars(sa.select(Zone.zone_id).where(Zone.store_id == store_id))
    result = footfall.occupancy(facts, now, VISIT_IDLE_TIMEOUT_S, zones)
    body = OccupancyOut(
        store_id=store_id,
        at=now,
        in_store=result.in_store,
        zones=[ZoneOccupancyOut(zone_id=z, present=n) for z, n in result.zones.items()],
    )
    return answer(body, body.zones, f"occupancy-{store_id}")


@router.get("/visits-per-hour", response_model=VisitsPerHourOut, responses=CSV_RESPONSE)
def visits_per_hour(
    store_id: StoreId,
    session: SessionDep,
    answer: AnswerDep,
    rules: Rules,
    local: Local,
    day: Annotated[
        date | None, Query(alias="date", description="local day (default: today)")
    ] = None,
) -> VisitsPerHourOut | Response:
    """Visits begun in each hour of a day, against the same weekday of the 4 weeks before."""
    zone = local.zone
    day = day or datetime.now(zone).date()
    since = _local_midnight(day - timedelta(weeks=4), zone)
    until = _local_midnight(day + timedelta(days=1), zone)
    hours = footfall.visits_by_hour(_visits(session, store_id, since, until), day, zone, rules)
    rows = [
        HourRow(
            hour=h.hour,
            today=h.today,
            week_1=h.weeks_ago[0],
            week_2=h.weeks_ago[1],
            week_3=h.weeks_ago[2],
            week_4=h.weeks_ago[3],
            average_4_weeks=round(h.average, 2),
        )
        for h in hours
    ]
    body = VisitsPerHourOut(
        store_id=store_id,
        date=day,
        timezone=local.name,
        rules=_rules_out(rules),
        total_today=sum(row.today for row in rows),
        rows=rows,
    )
    return answer(body, rows, f"visits-per-hour-{store_id}-{day}")


@router.get("/visitors", response_model=VisitorsOut, responses=CSV_RESPONSE)
def visitors(
    period: PeriodDep,
    session: SessionDep,
    answer: AnswerDep,
    lookback_days: Annotated[
        int, Query(ge=1, le=365, description="days searched for an earlier visit")
    ] = 28,
) -> VisitorsOut | Response:
    """Visits, unique visitors and returning visitors, with bounds (see ``method``)."""
    since = period.since
    visits = _visits(session, period.store_id, since, period.until)
    earlier = _visits(session, period.store_id, since - timedelta(days=lookback_days), since)
    summary = footfall.visitor_summary(visits, earlier, period.rules)
    body = VisitorsOut(
        **period.fields(),
        lookback_days=lookback_days,
        visits=summary.visits,
        unique_visitors=summary.unique_visitors,
        identified_visitors=summary.identified_visitors,
        anonymous_visitors=summary.anonymous_visitors,
        returning_identified=summary.returning_identified,
        returning_rate_identified=summary.returning_rate_identified,
        returning_rate_lower=summary.returning_rate_lower,
        returning_rate_upper=summary.returning_rate_upper,
        method=RETURNING_METHOD,
    )
    return answer(body, [body], period.filename("visitors"))


@router.get("/dwell", response_model=DwellOut, responses=CSV_RESPONSE)
def dwell(period: PeriodDep, session: SessionDep, answer: AnswerDep) -> DwellOut | Response:
    """How long visits lasted: buckets from the minimum stay up, median, 90th percentile."""
    visits = _period_visits(session, period)
    result = footfall.dwell_distribution(visits, period.rules)
    buckets = [
        DwellBucketOut(from_s=b.from_s, to_s=b.to_s, visits=b.visits) for b in result.buckets
    ]
    body = DwellOut(
        **period.fields(),
        median_s=result.median_s,
        p90_s=result.p90_s,
        mean_s=result.mean_s,
        buckets=buckets,
    )
    return answer(body, buckets, period.filename("dwell"))


def zone_stays(session: Session, store_id: str, since: datetime, until: datetime) -> list[ZoneStay]:
    """The stays in the store's zones that ended in [since, until): its exit events."""
    events = session.execute(
        sa.select(PresenceEventRow.zone_id, PresenceEventRow.ts, PresenceEventRow.dwell_s).where(
            PresenceEventRow.store_id == store_id,
            EXIT_EVENTS,  # the exits' own index (models.partial_index)
            PresenceEventRow.ts >= since,
            PresenceEventRow.ts < until,
        )
    )
    return [ZoneStay(zone_id=z, ended_at=ts, dwell_s=d) for z, ts, d in events]


@router.get("/zones", response_model=ZonesOut, responses=CSV_RESPONSE)
def zones(period: PeriodDep, session: SessionDep, answer: AnswerDep) -> ZonesOut | Response:
    """The zone heatmap: stays and time spent per zone and local hour over the period."""
    stays = zone_stays(session, period.store_id, period.since, period.until)
    cells = footfall.zone_heatmap(stays, period.local.zone, period.rules)
    rows = [
        ZoneHourOut(zone_id=c.zone_id, hour=c.hour, stays=c.stays, dwell_s=c.dwell_s) for c in cells
    ]
    body = ZonesOut(
        **period.fields(),
        zones=sorted({stay.zone_id for stay in stays}),
        rows=rows,
    )
    return answer(body, rows, period.filename("zones"))


@router.get("/peak-hours", response_model=PeakHoursOut, responses=CSV_RESPONSE)
def peak_hours(
    period: PeriodDep, session: SessionDep, answer: AnswerDep
) -> PeakHoursOut | Response:
    """Average visits per weekday and hour over the period, busiest first."""
    peaks = footfall.peak_hours(
        _period_visits(session, period),
        period.start,
        period.end + timedelta(days=1),
        period.local.zone,
        period.rules,
    )
    rows = [
        PeakHourOut(weekday=p.weekday, hour=p.hour, visits=p.visits, average=round(p.average, 2))
        for p in peaks
    ]
    body = PeakHoursOut(**period.fields(), rows=rows)
    return answer(body, rows, period.filename("peak-hours"))


@router.get("/capture", response_model=CaptureOut, responses=CSV_RESPONSE)
def capture(period: PeriodDep, session: SessionDep, answer: AnswerDep) -> CaptureOut | Response:
    """Capture rate: visits among everyone who came by (visits plus the devices the gateways
    heard that never came into a zone). Hours are UTC on the gateways' side, so a period's
    passers-by are those of the UTC hours within its local days."""
    visits = _period_visits(session, period)
    passed = session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(GatewayTraffic.passers_by), 0)).where(
            GatewayTraffic.store_id == period.store_id,
            GatewayTraffic.hour >= period.since,
            GatewayTraffic.hour < period.until,
        )
    )
    result = footfall.Capture(
        entered=sum(1 for visit in visits if footfall.counts_as_visit(visit, period.rules)),
        passed_by=int(passed or 0),
    )
    body = CaptureOut(
        **period.fields(),
        entered=result.entered,
        passed_by=result.passed_by,
        capture_rate=result.rate,
    )
    return answer(body, [body], period.filename("capture"))


@router.get("/health", response_model=HealthOut)
def health(store_id: StoreId, session: SessionDep) -> HealthOut:
    """The store's gateways (online when they reported so recently) and beacons with battery."""
    now = datetime.now(UTC)
    gateways = session.scalars(
        sa.select(GatewayStatusRow)
        .where(GatewayStatusRow.store_id == store_id)
        .order_by(GatewayStatusRow.gateway_id)
    )
    beacons = session.scalars(
        sa.select(BeaconHealthRow)
        .where(BeaconHealthRow.store_id == store_id)
        .order_by(BeaconHealthRow.beacon_id, BeaconHealthRow.gateway_id)
    )
    return HealthOut(
        store_id=store_id,
        at=now,
        gateways=[
            GatewayHealthOut(
                gateway_id=row.gateway_id,
                state=row.state,
                online=row.state == "online"
                and (now - row.received_at).total_seconds() <= GATEWAY_SILENT_AFTER_S,
                last_report=row.received_at,
                version=row.version,
                adverts_per_s=row.adverts_per_s,
                outbox_depth=row.outbox_depth,
                cpu_temp_c=row.cpu_temp_c,
                config_error=row.config_error,
            )
            for row in gateways
        ],
        beacons=[
            BeaconHealthOut(
                gateway_id=row.gateway_id,
                beacon_id=row.beacon_id,
                missing=row.missing,
                last_seen=row.last_seen,
                rssi=row.rssi,
                battery_mv=row.battery_mv,
                battery_low=None if row.battery_mv is None else row.battery_mv < LOW_BATTERY_MV,
                temperature_c=row.temperature_c,
            )
            for row in beacons
        ],
    )
