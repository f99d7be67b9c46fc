"""What the campaign tests share: a running cloud, shoppers, carts and presence events."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cloud_api.app import create_app
from cloud_api.config import CloudSettings
from cloud_api.deps import CloudContext
from cloud_api.ingest.presence_service import PresenceOutcome, PresenceService
from cloud_api.ingest.resolve import shopper_token_ref
from cloud_api.match.offer_policy import offer_policy
from cloud_api.store.models import Base, Cart
from storelink.tokens import token_window
from storelink.wire import PresenceEvent, PresenceKind, Subject, SubjectType
from tests.helpers import ADMIN_HEADERS, ADMIN_TOKEN
from tests.shopper_app import App, register

__all__ = ["ADMIN_HEADERS", "App", "Engagement", "register", "running_engagement"]


@dataclass
class Engagement:
    app: FastAPI
    client: TestClient

    @property
    def context(self) -> CloudContext:
        context: CloudContext = self.app.state.context
        return context

    def service(self) -> PresenceService:
        context = self.context
        return PresenceService(context.sessions, context.directory, offer_policy(context.settings))

    def rows(self, model: type[Base], *where: Any) -> list[Any]:
        with self.context.sessions() as session:
            return list(session.scalars(sa.select(model).where(*where)))

    def campaign(self, **spec: Any) -> dict[str, Any]:
        body = {"name": spec.get("id", "c1"), "reward": {"value": "10"}, **spec}
        response = self.client.post("/v1/campaigns", json=body, headers=ADMIN_HEADERS)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def cart(
        self,
        shopper: App,
        updated_at: datetime,
        *,
        cart_id: str = "cart-1",
        items: list[dict[str, Any]] | None = None,
    ) -> None:
        lines = items or [
            {
                "sku": "SHOE-042",
                "name": "Trail runners",
                "category": "shoes",
                "unit_price": "89.90",
                "quantity": 1,
            },
            {
                "sku": "SOCK-007",
                "name": "Merino socks",
                "category": "accessories",
                "unit_price": "12.50",
                "quantity": 2,
            },
        ]
        total = sum(Decimal(line["unit_price"]) * line["quantity"] for line in lines)
        with self.context.sessions.begin() as session:
            session.merge(
                Cart(
                    cart_id=cart_id,
                    shopper_id=shopper.shopper_id,
                    items=lines,
                    total=total,
                    currency="EUR",
                    status="open",
                    updated_at=updated_at,
                )
            )

    def seen(
        self,
        shopper: App,
        ts: datetime,
        kind: PresenceKind = PresenceKind.ENTER,
        *,
        zone: str = "entrance",
        dwell_s: float = 0.0,
        store: str = "store-1",
        now: datetime | None = None,
    ) -> PresenceOutcome:
        """The shopper's phone seen by a gateway, as the MQTT consumer hands it on."""
        ref = shopper_token_ref(shopper.app_key, token_window(ts.timestamp()))
        event = PresenceEvent(
            store_id=store,
            gateway_id="gw-1",
            zone_id=zone,
            kind=kind,
            subject=Subject(type=SubjectType.APP, ref=ref),
            ts=ts,
            dwell_s=dwell_s,
            rssi=-61,
        )
        return self.service().handle(event, now or ts)


@contextmanager
def running_engagement(database_url: str, **overrides: Any) -> Iterator[Engagement]:
    fields: dict[str, Any] = {"mqtt_enabled": False, "admin_token": ADMIN_TOKEN, **overrides}
    settings = CloudSettings(database_url=database_url, **fields)
    app = create_app(settings)
    with TestClient(app) as client:
        yield Engagement(app, client)
