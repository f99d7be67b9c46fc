"""The shopper app as the tests play it: register, then sign each request with the app key."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cloud_api.app import create_app
from cloud_api.auth.app_auth import APP_SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_app_request
from cloud_api.auth.signing import SIGNATURE_HEADER, sign_body
from cloud_api.config import CloudSettings
from cloud_api.deps import CloudContext
from cloud_api.ingest.resolve import shopper_token_ref
from cloud_api.store.models import Base
from storelink.tokens import token_window
from storelink.wire import PresenceEvent, PresenceKind, Subject, SubjectType

WEBHOOK_SECRET = "shopper-test-webhook-secret"
SHOPIFY_SECRET = "shpss_test_client_secret"
STORE_UUID = "f7826da6-4fa2-4e98-8024-bc5b71e0893e"


@dataclass
class Cloud:
    """A running cloud app and a client for it; the tests' own clouds add what they need."""

    app: FastAPI
    client: TestClient

    @property
    def context(self) -> CloudContext:
        context: CloudContext = self.app.state.context
        return context

    def rows(self, model: type[Base], *where: Any) -> list[Any]:
        with self.context.sessions() as session:
            return list(session.scalars(sa.select(model).where(*where)))


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

    def seen(
        self,
        ts: datetime,
        kind: PresenceKind = PresenceKind.ENTER,
        *,
        zone: str = "entrance",
        dwell_s: float = 0.0,
        store: str = "store-1",
    ) -> PresenceEvent:
        """The phone as gw-1 reports it: the app's rotating token at ``ts`` names it."""
        ref = shopper_token_ref(self.app_key, token_window(ts.timestamp()))
        return PresenceEvent(
            store_id=store,
            gateway_id="gw-1",
            zone_id=zone,
            kind=kind,
            subject=Subject(type=SubjectType.APP, ref=ref),
            ts=ts,
            dwell_s=dwell_s,
            rssi=-61,
        )


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


TRAIL_RUNNERS = {
    "sku": "SHOE-042",
    "name": "Trail runners",
    "category": "shoes",
    "unit_price": "89.90",
    "quantity": 1,
}
MERINO_SOCKS = {
    "sku": "SOCK-007",
    "name": "Merino socks",
    "category": "accessories",
    "unit_price": "12.50",
    "quantity": 2,
}
CART_LINES = (TRAIL_RUNNERS, MERINO_SOCKS)


def cart_body(
    shopper_id: str,
    updated_at: datetime,
    *,
    cart_id: str = "cart-1",
    items: Sequence[dict[str, Any]] = CART_LINES,
    **changes: Any,
) -> bytes:
    """An open cart as the e-commerce site posts it; ``changes`` override any field."""
    total = sum(Decimal(item["unit_price"]) * item["quantity"] for item in items)
    cart = {
        "cart_id": cart_id,
        "shopper_id": shopper_id,
        "items": list(items),
        "total": str(total),
        "currency": "EUR",
        "status": "open",
        "updated_at": updated_at.isoformat(),
    }
    return json.dumps(cart | changes).encode()


def post_cart(
    client: TestClient, secret: str, body: bytes, signature: str | None = None
) -> httpx.Response:
    """The cart webhook, signed with ``secret`` unless ``signature`` is given."""
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign_body(secret, body) if signature is None else signature,
    }
    return client.post("/v1/webhooks/carts", content=body, headers=headers)


def iso(at: datetime) -> str:
    return at.isoformat()
