"""The store beacons' health, from the gateways' retained fleet reports."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloud_api.store.db import upsert
from cloud_api.store.models import BeaconHealthRow
from storelink.wire import BeaconFleetReport


def record_beacon_report(session: Session, report: BeaconFleetReport) -> bool:
    """Keep each beacon's entry of ``report`` unless the gateway reported it later already;
    a beacon no longer in the gateway's report is forgotten. True when the report was kept."""
    newer = session.scalar(
        sa.select(sa.func.count())
        .select_from(BeaconHealthRow)
        .where(
            BeaconHealthRow.store_id == report.store_id,
            BeaconHealthRow.gateway_id == report.gateway_id,
            BeaconHealthRow.ts >= report.ts,
        )
    )
    if newer:
        return False
    session.execute(
        sa.delete(BeaconHealthRow).where(
            BeaconHealthRow.store_id == report.store_id,
            BeaconHealthRow.gateway_id == report.gateway_id,
            BeaconHealthRow.beacon_id.not_in([beacon.beacon_id for beacon in report.beacons]),
        )
    )
    for beacon in report.beacons:
        values = {
            "ts": report.ts,
            "missing": beacon.missing,
            "last_seen": beacon.last_seen,
            "rssi": beacon.rssi,
            "battery_mv": beacon.battery_mv,
            "temperature_c": beacon.temperature_c,
            "telemetry_at": beacon.telemetry_at,
        }
        statement = upsert(session, BeaconHealthRow).values(
            store_id=report.store_id,
            gateway_id=report.gateway_id,
            beacon_id=beacon.beacon_id,
            **values,
        )
        session.execute(
            statement.on_conflict_do_update(
                index_elements=[
                    BeaconHealthRow.store_id,
                    BeaconHealthRow.gateway_id,
                    BeaconHealthRow.beacon_id,
                ],
                set_={name: statement.excluded[name] for name in values},
            )
        )
    return True
