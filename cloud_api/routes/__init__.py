"""The HTTP API: one router per resource, all under /v1 except the health check."""

from __future__ import annotations

from fastapi import APIRouter

from cloud_api.routes import (
    accounts,
    campaigns,
    checkins,
    commerce,
    engagement,
    footfall,
    gateways,
    health,
    notifications,
    offers,
    shoppers,
    stats,
    stores,
    visits,
    webhooks,
)

api_router = APIRouter(prefix="/v1")
for module in (
    shoppers,
    webhooks,
    offers,
    visits,
    gateways,
    stats,
    footfall,
    checkins,
    commerce,
    accounts,
    stores,
    campaigns,
    notifications,
    engagement,
):
    api_router.include_router(module.router)

health_router = health.router

__all__ = ["api_router", "health_router"]
