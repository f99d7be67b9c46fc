"""Gateway configs published again when the cloud starts.

A config is retained on the broker, and a broker that restarted without persistence (or a new
broker node) has lost it: a gateway that connects then waits for a config that never comes
until something in its store changes. Publishing every store's configs at start puts them
back; a gateway that already has the content only sees its version go up.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from cloud_api.config import CloudSettings
from cloud_api.fleet.stores import publish_all_store_configs

logger = logging.getLogger(__name__)


def republish_gateway_configs(settings: CloudSettings, sessions: sessionmaker[Session]) -> bool:
    """True when every config went out; never raises (the cloud starts regardless)."""
    if not settings.mqtt_enabled:
        return False
    try:
        with sessions() as session:
            published = publish_all_store_configs(session, settings)
    except sa.exc.SQLAlchemyError:
        logger.warning("gateway configs not published at start", exc_info=True)
        return False
    if not published:
        logger.warning("gateway configs not published at start: the broker did not take them")
    return published
