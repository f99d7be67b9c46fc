"""What the campaign tests share: a running cloud, shoppers, carts and presence events."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient

from cloud_api.app import create_app
from cloud_api.config import CloudSettings
from cloud_api.ingest.presence_service import PresenceOutcome, PresenceService
from cloud_api.match.offer_policy import offer_policy
from cloud_api.store.models import Cart
from storelink.wire import PresenceKind
from tests.helpers import ADMIN_HEADERS, ADMIN_TOKEN
from tests.shopper_app import CART_LINES, App, Cloud, register

__all__ = ["ADMIN_HEADERS", "App", "Engagement", "register", "running_engagement"]


@dataclass
class Engagement(Cloud):
    def service(self) -> PresenceService:
        context = self.context
        return PresenceService(context.sessions, context.directory, offer_policy(context.settings))

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
        lines = items or list(CART_LINES)
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
        event = shopper.seen(ts, kind, zone=zone, dwell_s=dwell_s, store=store)
        return self.service().handle(event, now or ts)


@contextmanager
def running_engagement(database_url: str, **overrides: Any) -> Iterator[Engagement]:
    fields: dict[str, Any] = {"mqtt_enabled": False, "admin_token": ADMIN_TOKEN, **overrides}
    settings = CloudSettings(database_url=database_url, **fields)
    app = create_app(settings)
    with TestClient(app) as client:
        yield Engagement(app, client)
