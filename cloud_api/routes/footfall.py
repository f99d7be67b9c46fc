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
from typing import Annotated, Any, Literal
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


def _period(start: date | None, end: date | None, tz: ZoneInfo) -> tuple[date, date]:
    end = end or datetime.now(tz).date()
    start = start or end - timedelta(days=6)
    if start > end:
        raise HTTPException(422, f"from ({start}) is after to ({end})")
    if (end - start).days > 366:
        raise HTTPException(422, "a period spans at most 366 days")
    return start, end


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tz).astimezone(UTC)


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


def _present_zones(presence: dict[str, Any]) -> set[str]:
    # Keys are "zone/ref" (see cloud_api.ingest.visits); ids never contain "/".
    return {key.split("/", 1)[0] for key, (_, here) in presence_from_json(presence).items() if here}


@router.get("/occupancy", response_model=OccupancyOut, responses=CSV_RESPONSE)
def occupancy(
    store_id: StoreId, session: SessionDep, format: Format = "json"
) -> OccupancyOut | Response:
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
    return _csv(body.zones, f"occupancy-{store_id}") if format == "csv" else body


@router.get("/visits-per-hour", response_model=VisitsPerHourOut, responses=CSV_RESPONSE)
def visits_per_hour(
    store_id: StoreId,
    session: SessionDep,
    rules: Rules,
    local: Local,
    day: Annotated[
        date | None, Query(alias="date", description="local day (default: today)")
    ] = None,
    format: Format = "json",
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
    return _csv(rows, f"visits-per-hour-{store_id}-{day}") if format == "csv" else body


@router.get("/visitors", response_model=VisitorsOut, responses=CSV_RESPONSE)
def visitors(
    store_id: StoreId,
    session: SessionDep,
    rules: Rules,
    local: Local,
    start: From = None,
    end: To = None,
    lookback_days: Annotated[
        int, Query(ge=1, le=365, description="days searched for an earlier visit")
    ] = 28,
    format: Format = "json",
) -> VisitorsOut | Response:
    """Visits, unique visitors and returning visitors, with bounds (see ``method``)."""
    zone = local.zone
    start, end = _period(start, end, zone)
    since, until = _local_midnight(start, zone), _local_midnight(end + timedelta(days=1), zone)
    period = _visits(session, store_id, since, until)
    earlier = _visits(session, store_id, since - timedelta(days=lookback_days), since)
    summary = footfall.visitor_summary(period, earlier, rules)
    body = VisitorsOut(
        store_id=store_id,
        start=start,
        end=end,
        timezone=local.name,
        lookback_days=lookback_days,
        rules=_rules_out(rules),
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
    return _csv([body], f"visitors-{store_id}-{start}-{end}") if format == "csv" else body


@router.get("/dwell", response_model=DwellOut, responses=CSV_RESPONSE)
def dwell(
    store_id: StoreId,
    session: SessionDep,
    rules: Rules,
    local: Local,
    start: From = None,
    end: To = None,
    format: Format = "json",
) -> DwellOut | Response:
    """How long visits lasted: buckets from the minimum stay up, median, 90th percentile."""
    zone = local.zone
    start, end = _period(start, end, zone)
    since, until = _local_midnight(start, zone), _local_midnight(end + timedelta(days=1), zone)
    result = footfall.dwell_distribution(_visits(session, store_id, since, until), rules)
    buckets = [
        DwellBucketOut(from_s=b.from_s, to_s=b.to_s, visits=b.visits) for b in result.buckets
    ]
    body = DwellOut(
        store_id=store_id,
        start=start,
        end=end,
        timezone=local.name,
        rules=_rules_out(rules),
        median_s=result.median_s,
        p90_s=result.p90_s,
        mean_s=result.mean_s,
        buckets=buckets,
    )
    return _csv(buckets, f"dwell-{store_id}-{start}-{end}") if format == "csv" else body


@router.get("/zones", response_model=ZonesOut, responses=CSV_RESPONSE)
def zones(
    store_id: StoreId,
    session: SessionDep,
    rules: Rules,
    local: Local,
    start: From = None,
    end: To = None,
    format: Format = "json",
) -> ZonesOut | Response:
    """The zone heatmap: stays and time spent per zone and local hour over the period."""
    zone = local.zone
    start, end = _period(start, end, zone)
    since, until = _local_midnight(start, zone), _local_midnight(end + timedelta(days=1), zone)
    events = session.execute(
        sa.select(PresenceEventRow.zone_id, PresenceEventRow.ts, PresenceEventRow.dwell_s).where(
            PresenceEventRow.store_id == store_id,
            PresenceEventRow.kind == "exit",
            PresenceEventRow.ts >= since,
            PresenceEventRow.ts < until,
        )
    )
    stays = [ZoneStay(zone_id=z, ended_at=ts, dwell_s=d) for z, ts, d in events]
    cells = footfall.zone_heatmap(stays, zone, rules)
    rows = [
        ZoneHourOut(zone_id=c.zone_id, hour=c.hour, stays=c.stays, dwell_s=c.dwell_s) for c in cells
    ]
    body = ZonesOut(
        store_id=store_id,
        start=start,
        end=end,
        timezone=local.name,
        rules=_rules_out(rules),
        zones=sorted({stay.zone_id for stay in stays}),
        rows=rows,
    )
    return _csv(rows, f"zones-{store_id}-{start}-{end}") if format == "csv" else body


@router.get("/peak-hours", response_model=PeakHoursOut, responses=CSV_RESPONSE)
def peak_hours(
    store_id: StoreId,
    session: SessionDep,
    rules: Rules,
    local: Local,
    start: From = None,
    end: To = None,
    format: Format = "json",
) -> PeakHoursOut | Response:
    """Average visits per weekday and hour over the period, busiest first."""
    zone = local.zone
    start, end = _period(start, end, zone)
    since, until = _local_midnight(start, zone), _local_midnight(end + timedelta(days=1), zone)
    peaks = footfall.peak_hours(
        _visits(session, store_id, since, until), start, end + timedelta(days=1), zone, rules
    )
    rows = [
        PeakHourOut(weekday=p.weekday, hour=p.hour, visits=p.visits, average=round(p.average, 2))
        for p in peaks
    ]
    body = PeakHoursOut(
        store_id=store_id,
        start=start,
        end=end,
        timezone=local.name,
        rules=_rules_out(rules),
        rows=rows,
    )
    return _csv(rows, f"peak-hours-{store_id}-{start}-{end}") if format == "csv" else body


@router.get("/capture", response_model=CaptureOut, responses=CSV_RESPONSE)
def capture(
    store_id: StoreId,
    session: SessionDep,
    rules: Rules,
    local: Local,
    start: From = None,
    end: To = None,
    format: Format = "json",
) -> CaptureOut | Response:
    """Capture rate: visits among everyone who came by (visits plus the devices the gateways
    heard that never came into a zone). Hours are UTC on the gateways' side, so a period's
    passers-by are those of the UTC hours within its local days."""
    zone = local.zone
    start, end = _period(start, end, zone)
    since, until = _local_midnight(start, zone), _local_midnight(end + timedelta(days=1), zone)
    visits = _visits(session, store_id, since, until)
    passed = session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(GatewayTraffic.passers_by), 0)).where(
            GatewayTraffic.store_id == store_id,
            GatewayTraffic.hour >= since,
            GatewayTraffic.hour < until,
        )
    )
    result = footfall.Capture(
        entered=sum(1 for visit in visits if footfall.counts_as_visit(visit, rules)),
        passed_by=int(passed or 0),
    )
    body = CaptureOut(
        store_id=store_id,
        start=start,
        end=end,
        timezone=local.name,
        rules=_rules_out(rules),
        entered=result.entered,
        passed_by=result.passed_by,
        capture_rate=result.rate,
    )
    return _csv([body], f"capture-{store_id}-{start}-{end}") if format == "csv" else body


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
