"""Liveness, readiness and metrics for load balancers, orchestrators and Prometheus."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response, status
from prometheus_client import CONTENT_TYPE_LATEST

from cloud_api.api.schemas import Health
from cloud_api.deps import ConsumerDep, SessionDep
from cloud_api.metrics import metrics_registry, render

router = APIRouter(tags=["health"])
logger = logging.getLogger(__name__)


@router.get("/healthz")
def healthz(session: SessionDep, consumer: ConsumerDep, response: Response) -> Health:
    """503 when the database does not answer; a broker outage is reported, not fatal."""
    mqtt = "disabled" if consumer is None else "connected" if consumer.connected else "disconnected"
    try:
        session.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as error:
        logger.warning("health check: database unavailable: %s", error)
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Health(status="unavailable", database=type(error).__name__, mqtt=mqtt)
    return Health(status="ok", database="ok", mqtt=mqtt)


@router.get("/readyz")
def readyz(session: SessionDep, consumer: ConsumerDep, response: Response) -> Health:
    """Ready to take traffic: the database answers and, when ingest runs, it is subscribed."""
    health = healthz(session, consumer, response)
    subscribed = consumer is None or consumer.wait_until_subscribed(0)
    if health.status == "ok" and not subscribed:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Health(status="unavailable", database=health.database, mqtt=health.mqtt)
    return health


@router.get("/metrics", response_class=Response)
def metrics(request: Request, consumer: ConsumerDep) -> Response:
    """Prometheus text format: the ingest's counters and its broker connection."""
    registry = getattr(request.app.state, "metrics_registry", None)
    if registry is None:
        writer = getattr(request.app.state, "timeseries", None)
        stitch = getattr(request.app.state, "stitch_metrics", None)
        registry = request.app.state.metrics_registry = metrics_registry(consumer, writer, stitch)
    return Response(render(registry), media_type=CONTENT_TYPE_LATEST)
