"""The shopper app as the tests play it: register, then sign each request with the app key."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cloud_api.app import create_app
from cloud_api.auth.app_auth import APP_SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_app_request
from cloud_api.config import CloudSettings
from cloud_api.deps import CloudContext
from cloud_api.store.models import Base

WEBHOOK_SECRET = "shopper-test-webhook-secret"
SHOPIFY_SECRET = "shpss_test_client_secret"
STORE_UUID = "f7826da6-4fa2-4e98-8024-bc5b71e0893e"


@dataclass
class Cloud:
    app: FastAPI
    client: TestClient

    @property
    def context(self) -> CloudContext:
        context: CloudContext = self.app.state.context
        return context

    def rows(self, model: type[Base]) -> list[Any]:
        with self.context.sessions() as session:
            return list(session.scalars(sa.select(model)))


def running_cloud(database_url: str, **overrides: Any) -> Iterator[Cloud]:
    settings = CloudSettings(
        **{
            "database_url": database_url,
            "mqtt_enabled": False,
            "webhook_secret": WEBHOOK_SECRET,
            "shopify_webhook_secret": SHOPIFY_SECRET,
            **overrides,
        }
    )
    app = create_app(settings)
    with TestClient(app) as client:
        yield Cloud(app, client)


@dataclass(frozen=True)
class App:
    """One registered shopper's app."""

    shopper_id: str
    app_key: bytes

    def request(
        self,
        client: TestClient,
        method: str,
        path: str,
        body: Any = None,
        *,
        at: float | None = None,
        key: bytes | None = None,
    ) -> httpx.Response:
        raw = b"" if body is None else json.dumps(body).encode()
        timestamp = str(int(time.time() if at is None else at))
        signature = sign_app_request(key or self.app_key, timestamp, method, path, raw)
        headers = {TIMESTAMP_HEADER: timestamp, APP_SIGNATURE_HEADER: signature}
        if raw:
            headers["Content-Type"] = "application/json"
        return client.request(method, path, content=raw, headers=headers)


def register(
    client: TestClient,
    *,
    personal_offers: bool = True,
    footfall_analytics: bool = True,
    **extra: Any,
) -> App:
    response = client.post(
        "/v1/shoppers",
        json={
            "display_name": "Alice",
            "consent": {
                "personal_offers": personal_offers,
                "footfall_analytics": footfall_analytics,
            },
            "consent_text_version": "2026-11",
            **extra,
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return App(body["shopper_id"], bytes.fromhex(body["app_key"]))


def iso(at: datetime) -> str:
    return at.isoformat()
