"""Republishing the gateways' retained configs after a change to whose wearables they resolve.

A wearable's IRK is in the config of its store's gateways (or of every store's) only while its
owner's consent holds: registering or removing a wearable, a consent change and an erasure
each publish the affected stores again. Publishing talks to the broker, so it runs after the
response, in a session of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from cloud_api.deps import CloudContext
from cloud_api.fleet.stores import publish_all_store_configs, publish_store_configs

logger = logging.getLogger(__name__)


def republish(context: CloudContext, store_ids: Collection[str | None]) -> None:
    """Publish the configs of ``store_ids``; None among them means every store."""
    if not store_ids:
        return
    with context.sessions() as session:
        if None in store_ids:
            published = publish_all_store_configs(session, context.settings)
        else:
            published = all(
                publish_store_configs(session, context.settings, store_id)
                for store_id in sorted(s for s in store_ids if s is not None)
            )
    if not published and context.settings.mqtt_enabled:
        logger.warning("gateway configs not republished after a wearable or consent change")
