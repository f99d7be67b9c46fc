"""The latest status of every gateway, from its retained status messages."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from cloud_api.db import upsert
from cloud_api.models import GatewayStatusRow
from storelink.wire import GatewayStatus


def record_gateway_status(session: Session, status: GatewayStatus, now: datetime) -> bool:
    """Keep ``status`` unless a newer one is stored; True when it was kept.

    The broker replays the retained status on every reconnect, so old news arrives often.
    """
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
    return session.execute(statement.returning(GatewayStatusRow.store_id)).first() is not None
