"""The latest status of every gateway, from its retained status messages."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloud_api.ingest.gateway_history import add_status_history
from cloud_api.store.db import upsert
from cloud_api.store.models import GatewayStatusRow, GatewayTraffic
from storelink.wire import GatewayStatus


def passers_by_increase(
    previous_passers_by: int | None, previous_uptime_s: float | None, status: GatewayStatus
) -> int:
    """Passers-by since the previous status: the counter's increase, or all of it after a
    restart (the counter, or the uptime, went down)."""
    if previous_passers_by is None:
        return status.passers_by
    restarted = status.passers_by < previous_passers_by or (
        status.uptime_s is not None
        and previous_uptime_s is not None
        and status.uptime_s < previous_uptime_s
    )
    return status.passers_by if restarted else status.passers_by - previous_passers_by


def record_gateway_status(session: Session, status: GatewayStatus, now: datetime) -> bool:
    """Keep ``status`` unless a newer one is stored; True when it was kept.

    The broker replays the retained status on every reconnect, so old news arrives often; only
    a kept status adds its passers-by to the hour's traffic and a row to the gateway's history,
    so a replay counts nothing twice.
    """
    previous = session.execute(
        sa.select(
            GatewayStatusRow.passers_by, GatewayStatusRow.uptime_s, GatewayStatusRow.state
        ).where(
            GatewayStatusRow.store_id == status.store_id,
            GatewayStatusRow.gateway_id == status.gateway_id,
        )
    ).first()
    increase = passers_by_increase(
        previous.passers_by if previous else None, previous.uptime_s if previous else None, status
    )
    values = {
        "state": status.state.value,
        "ts": status.ts,
        "version": status.version,
        "adverts_seen": status.adverts_seen,
        "events_published": status.events_published,
        "decode_errors": status.decode_errors,
        "outbox_depth": status.outbox_depth,
        "outbox_dropped": status.outbox_dropped,
        "uptime_s": status.uptime_s,
        "adverts_per_s": status.adverts_per_s,
        "cpu_temp_c": status.cpu_temp_c,
        "scanner_restarts": status.scanner_restarts,
        "config_version": status.config_version,
        "config_error": status.config_error,
        "passers_by": status.passers_by,
        "received_at": now,
    }
    statement = upsert(session, GatewayStatusRow).values(
        store_id=status.store_id, gateway_id=status.gateway_id, **values
    )
    statement = statement.on_conflict_do_update(
        index_elements=[GatewayStatusRow.store_id, GatewayStatusRow.gateway_id],
        set_={name: statement.excluded[name] for name in values},
        where=GatewayStatusRow.ts < statement.excluded.ts,
    )
    kept = session.execute(statement.returning(GatewayStatusRow.store_id)).first() is not None
    if kept:
        add_status_history(session, status, previous.state if previous else None, now)
    if kept and increase > 0:
        _add_traffic(session, status, increase)
    return kept


def _add_traffic(session: Session, status: GatewayStatus, passers_by: int) -> None:
    hour = status.ts.replace(minute=0, second=0, microsecond=0)
    statement = upsert(session, GatewayTraffic).values(
        store_id=status.store_id, gateway_id=status.gateway_id, hour=hour, passers_by=passers_by
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[
                GatewayTraffic.store_id,
                GatewayTraffic.gateway_id,
                GatewayTraffic.hour,
            ],
            set_={"passers_by": GatewayTraffic.passers_by + sa.literal(passers_by)},
        )
    )
