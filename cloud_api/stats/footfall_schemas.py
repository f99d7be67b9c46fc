"""Response bodies of the footfall statistics (``/v1/stats/...``), as OpenAPI documents them.

Each body carries one table (``rows``, ``zones``, ``buckets``...), which is also what its
``?format=csv`` export holds, one CSV row per item.
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field


class StayRules(BaseModel):
    min_store_stay_s: float = Field(description="shorter stays in the store are not visits")
    min_zone_stay_s: float = Field(description="shorter stays in a zone are not zone visits")


class ZoneOccupancyOut(BaseModel):
    zone_id: str
    present: int = Field(description="subjects in the zone now")


class OccupancyOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "store_id": "store-1",
                    "at": "2026-11-24T15:42:07Z",
                    "in_store": 23,
                    "zones": [
                        {"zone_id": "entrance", "present": 4},
                        {"zone_id": "racks", "present": 11},
                        {"zone_id": "tills", "present": 8},
                    ],
                }
            ]
        }
    )

    store_id: str
    at: datetime
    in_store: int = Field(description="subjects in the store now, in any zone")
    zones: list[ZoneOccupancyOut]


class HourRow(BaseModel):
    hour: int = Field(ge=0, le=23, description="local hour of the day")
    today: int = Field(description="visits that began in this hour of the day asked for")
    week_1: int = Field(description="same weekday one week earlier")
    week_2: int
    week_3: int
    week_4: int
    average_4_weeks: float = Field(description="mean of week_1..week_4")


class VisitsPerHourOut(BaseModel):
    store_id: str
    date: date
    timezone: str
    rules: StayRules
    total_today: int
    rows: list[HourRow]


class VisitorsOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "store_id": "store-1",
                    "start": "2026-11-17",
                    "end": "2026-11-23",
                    "timezone": "Europe/Rome",
                    "lookback_days": 28,
                    "rules": {"min_store_stay_s": 60.0, "min_zone_stay_s": 20.0},
                    "visits": 1840,
                    "unique_visitors": 1512,
                    "identified_visitors": 312,
                    "anonymous_visitors": 1200,
                    "returning_identified": 141,
                    "returning_rate_identified": 0.452,
                    "returning_rate_lower": 0.093,
                    "returning_rate_upper": 0.887,
                    "method": "identified visitors are exact; anonymous ones bound the rate",
                }
            ]
        }
    )

    store_id: str
    start: date
    end: date = Field(description="last local day of the period, inclusive")
    timezone: str
    lookback_days: int = Field(description="days before the period searched for earlier visits")
    rules: StayRules
    visits: int
    unique_visitors: int
    identified_visitors: int = Field(
        description="recognised shoppers, IRK-resolved wearables and tags: stable across days"
    )
    anonymous_visitors: int = Field(
        description="daily pseudonyms of randomised addresses: never recognised on a later day"
    )
    returning_identified: int
    returning_rate_identified: float | None = Field(
        description="exact, among identified visitors; the best estimate for everyone"
    )
    returning_rate_lower: float | None = Field(
        description="over all visitors, counting every anonymous one as new"
    )
    returning_rate_upper: float | None = Field(
        description="over all visitors, counting every anonymous one as returning"
    )
    method: str = Field(description="how the figures cope with address randomisation")


class DwellBucketOut(BaseModel):
    from_s: float
    to_s: float | None = Field(description="null: open-ended")
    visits: int


class DwellOut(BaseModel):
    store_id: str
    start: date
    end: date
    timezone: str
    rules: StayRules
    median_s: float | None
    p90_s: float | None
    mean_s: float | None
    buckets: list[DwellBucketOut]


class ZoneHourOut(BaseModel):
    zone_id: str
    hour: int = Field(ge=0, le=23, description="local hour in which the zone stays ended")
    stays: int
    dwell_s: float = Field(description="time spent in the zone, summed over the stays")


class ZonesOut(BaseModel):
    store_id: str
    start: date
    end: date
    timezone: str
    rules: StayRules
    zones: list[str]
    rows: list[ZoneHourOut]


class PeakHourOut(BaseModel):
    weekday: int = Field(ge=0, le=6, description="Monday 0 .. Sunday 6")
    hour: int = Field(ge=0, le=23)
    visits: int = Field(description="visits in this weekday and hour over the period")
    average: float = Field(description="visits per occurrence of the weekday in the period")


class PeakHoursOut(BaseModel):
    store_id: str
    start: date
    end: date
    timezone: str
    rules: StayRules
    rows: list[PeakHourOut] = Field(description="busiest first")


class CaptureOut(BaseModel):
    store_id: str
    start: date
    end: date
    timezone: str
    rules: StayRules
    entered: int = Field(description="visits in the period")
    passed_by: int = Field(description="devices the gateways heard that never came in")
    capture_rate: float | None = Field(description="entered / (entered + passed_by)")


class GatewayHealthOut(BaseModel):
    gateway_id: str
    state: str
    online: bool = Field(description="reported online, and recently")
    last_report: datetime
    version: str
    adverts_per_s: float | None
    outbox_depth: int
    cpu_temp_c: float | None
    config_error: str | None


class BeaconHealthOut(BaseModel):
    gateway_id: str
    beacon_id: str
    missing: bool
    last_seen: datetime | None
    rssi: float | None
    battery_mv: int | None
    battery_low: bool | None = Field(description="null: the beacon sends no battery telemetry")
    temperature_c: float | None


class HealthOut(BaseModel):
    store_id: str
    at: datetime
    gateways: list[GatewayHealthOut]
    beacons: list[BeaconHealthOut]
