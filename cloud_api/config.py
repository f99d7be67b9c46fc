"""Cloud settings: ``STORELINK_*`` variables or the cloud's keys of the YAML file."""

from __future__ import annotations

import secrets
from decimal import Decimal

from pydantic import Field, SecretStr

from storelink.settings import StorelinkSettings


def _default_client_id() -> str:
    # Two cloud processes sharing an MQTT client id would take turns kicking each other off.
    return f"storelink-cloud-{secrets.token_hex(4)}"


class CloudSettings(StorelinkSettings):
    database_url: str = Field(
        default="sqlite:///./storelink.db",
        description="SQLAlchemy URL: sqlite:///path/to/file.db or postgresql+psycopg://user:pw@host/db",
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="signs the cart webhooks (X-Storelink-Signature); while unset they answer 503",
    )
    cart_abandon_after_s: float = Field(
        default=3600.0,
        gt=0,
        description="a cart with items, not ordered and untouched this long, counts as abandoned",
    )
    offer_percent_off: Decimal = Field(
        default=Decimal("10"), gt=0, le=100, description="discount of an abandoned-cart offer, in %"
    )
    offer_ttl_s: float = Field(
        default=7200.0, gt=0, description="seconds an offer code stays redeemable after it is made"
    )
    offer_cooldown_s: float = Field(
        default=86400.0,
        ge=0,
        description="at most one offer per shopper and cart within this many seconds",
    )
    mqtt_enabled: bool = Field(
        default=True, description="consume presence from the MQTT broker (off: HTTP API only)"
    )
    mqtt_client_id: str = Field(
        default_factory=_default_client_id,
        description="MQTT client id of the presence consumer; unique per process by default",
    )
