"""The gateways' status over time: every heartbeat kept, and when each went online or offline."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from cloud_api.store.models import GatewayStatusHistory
from storelink.wire import GatewayStatus


def add_status_history(
    session: Session, status: GatewayStatus, previous_state: str | None, now: datetime
) -> None:
    """Append ``status`` (already known to be newer than ``previous_state``'s status)."""
    session.add(
        GatewayStatusHistory(
            store_id=status.store_id,
            gateway_id=status.gateway_id,
            state=status.state.value,
            transition=previous_state != status.state.value,
            ts=status.ts,
            adverts_seen=status.adverts_seen,
            events_published=status.events_published,
            decode_errors=status.decode_errors,
            outbox_depth=status.outbox_depth,
            outbox_dropped=status.outbox_dropped,
            scanner_restarts=status.scanner_restarts,
            uptime_s=status.uptime_s,
            adverts_per_s=status.adverts_per_s,
            cpu_temp_c=status.cpu_temp_c,
            received_at=now,
        )
    )
