"""The application factory: ``uvicorn --factory cloud_api.app:create_app``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from cloud_api.api.openapi_docs import install_openapi
from cloud_api.api.problems import install_problem_handlers
from cloud_api.config import CloudSettings
from cloud_api.deps import CloudContext
from cloud_api.fleet.startup_configs import republish_gateway_configs
from cloud_api.ingest.consumer import PresenceConsumer
from cloud_api.ingest.directory import ShopperDirectory
from cloud_api.ingest.presence_service import PresenceService
from cloud_api.ingest.stitcher_process import StitcherProcess
from cloud_api.match.engagement import load_campaigns_file, outbox_sender
from cloud_api.match.offer_policy import offer_policy
from cloud_api.metrics import StitchCollector
from cloud_api.routes import api_router, health_router
from cloud_api.routes.dashboard import mount_dashboard
from cloud_api.store.db import make_engine, make_sessionmaker
from cloud_api.store.migrate import upgrade_database
from cloud_api.timeseries.writer import writer_from_settings
from storelink import __version__

logger = logging.getLogger(__name__)


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
        await asyncio.to_thread(load_campaigns_file, settings, sessions)
        await asyncio.to_thread(republish_gateway_configs, settings, sessions)
        if settings.webhook_secret is None:
            logger.warning("no webhook secret: cart webhooks answer 503")
        timeseries = writer_from_settings(settings, sessions)
        timeseries.start()
        app.state.timeseries = timeseries
        consumer = None
        stitcher = None
        if settings.mqtt_enabled:
            service = PresenceService(sessions, context.directory, offer_policy(settings))
            # Acknowledged once the points are written or on disk: a worker that dies before
            # gets the events again, and their points are derived again.
            consumer = PresenceConsumer(
                settings, service, sessions, on_commit=timeseries.committed, defer_ack=True
            )
            consumer.start()
            if settings.ingest_stitcher == "process":
                stitcher = StitcherProcess(settings)
                stitcher.start()
            if settings.ingest_stitcher != "inline":
                app.state.stitch_metrics = StitchCollector(
                    sessions, settings.mqtt_client_id, stitcher
                )
        app.state.consumer = consumer
        app.state.stitcher = stitcher
        outbox = outbox_sender(settings, sessions, consumer)
        outbox.start()
        app.state.outbox = outbox
        try:
            yield
        finally:
            outbox.stop()
            if consumer is not None:
                # The writer's last points acknowledge their messages before the disconnect.
                await asyncio.to_thread(consumer.stop, flush=timeseries.stop)
                if stitcher is not None:
                    # After the worker: what it stored last gets stitched before the end.
                    await asyncio.to_thread(stitcher.stop)
            else:
                await asyncio.to_thread(timeseries.stop)
            app.state.consumer = None
            app.state.stitcher = None
            app.state.timeseries = None
            engine.dispose()

    app = FastAPI(title="storelink cloud API", version=__version__, lifespan=lifespan)
    app.state.context = context
    app.state.consumer = None
    app.state.timeseries = None
    app.state.stitcher = None
    app.state.stitch_metrics = None
    install_problem_handlers(app)
    install_openapi(app)
    app.include_router(api_router)
    app.include_router(health_router)
    mount_dashboard(app)
    return app
