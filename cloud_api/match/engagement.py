"""Starting the engagement engine: the campaigns file into the database, the outbox sender."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from cloud_api.config import CloudSettings
from cloud_api.ingest.consumer import PresenceConsumer
from cloud_api.match.campaigns import CampaignSpec, load_campaign_file
from cloud_api.notify.outbox import Channel, OutboxSender, PublishChannel, WebhookChannel
from cloud_api.store.models import CampaignRow
from storelink.wire import utc_now

logger = logging.getLogger(__name__)

FILE_SOURCE = "file"
API_SOURCE = "api"


def save_campaign(session: Session, spec: CampaignSpec, source: str, now: datetime) -> bool:
    """Insert or replace the campaign ``spec.id``; True when it was new."""
    row = session.get(CampaignRow, spec.id)
    data = spec.model_dump(mode="json")
    if row is None:
        session.add(
            CampaignRow(
                id=spec.id, name=spec.name, spec=data, source=source, created_at=now, updated_at=now
            )
        )
        return True
    row.name = spec.name
    row.spec = data
    row.source = source
    row.updated_at = now
    return False


def sync_file_campaigns(session: Session, specs: Sequence[CampaignSpec], now: datetime) -> None:
    """The file's campaigns replace the file's earlier ones; the API's stay (unless redefined)."""
    wanted = {spec.id for spec in specs}
    session.execute(
        sa.delete(CampaignRow).where(
            CampaignRow.source == FILE_SOURCE, CampaignRow.id.not_in(sorted(wanted))
        )
    )
    for spec in specs:
        save_campaign(session, spec, FILE_SOURCE, now)


def load_campaigns_file(settings: CloudSettings, sessions: sessionmaker[Session]) -> None:
    path = settings.campaigns_file
    if path is None:
        return
    specs = load_campaign_file(path)
    with sessions.begin() as session:
        sync_file_campaigns(session, specs, utc_now())
    logger.info("loaded %d campaigns from %s", len(specs), path)


def outbox_sender(
    settings: CloudSettings, sessions: sessionmaker[Session], consumer: PresenceConsumer | None
) -> OutboxSender:
    """The sender of this worker, with the channels it can send on."""
    channels: dict[str, Channel] = {}
    if consumer is not None:
        channels["mqtt"] = PublishChannel(consumer.send_notification)
    secret = settings.push_webhook_secret
    if settings.push_webhook_url is not None and secret is not None:
        channels["webhook"] = WebhookChannel(settings.push_webhook_url, secret.get_secret_value())
    return OutboxSender(sessions, channels, settings.notification_max_attempts)
