"""The application factory: ``uvicorn --factory cloud_api.app:create_app``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from cloud_api.config import CloudSettings
from cloud_api.db import make_engine, make_sessionmaker
from cloud_api.deps import CloudContext
from cloud_api.directory import ShopperDirectory
from cloud_api.ingest import PresenceConsumer
from cloud_api.match import OfferPolicy
from cloud_api.migrate import upgrade_database
from cloud_api.presence_service import PresenceService
from cloud_api.routes import api_router, health_router
from storelink import __version__

logger = logging.getLogger(__name__)


def offer_policy(settings: CloudSettings) -> OfferPolicy:
    return OfferPolicy(
        abandon_after_s=settings.cart_abandon_after_s,
        percent_off=settings.offer_percent_off,
        ttl_s=settings.offer_ttl_s,
        cooldown_s=settings.offer_cooldown_s,
    )


def create_app(settings: CloudSettings | None = None) -> FastAPI:
    """The cloud API; its lifespan migrates the database and runs the MQTT consumer if enabled."""
    settings = settings or CloudSettings()
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    context = CloudContext(settings, sessions, ShopperDirectory(sessions))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Every worker upgrades at start; they take turns, and all but the first find nothing.
        await asyncio.to_thread(upgrade_database, settings.database_url)
        if settings.webhook_secret is None:
            logger.warning("no webhook secret: cart webhooks answer 503")
        consumer = None
        if settings.mqtt_enabled:
            service = PresenceService(sessions, context.directory, offer_policy(settings))
            consumer = PresenceConsumer(settings, service, sessions)
            consumer.start()
        app.state.consumer = consumer
        try:
            yield
        finally:
            if consumer is not None:
                consumer.stop()
            app.state.consumer = None
            engine.dispose()

    app = FastAPI(title="storelink cloud API", version=__version__, lifespan=lifespan)
    app.state.context = context
    app.state.consumer = None
    app.include_router(api_router)
    app.include_router(health_router)
    return app
