"""Cloud settings: ``STORELINK_*`` variables or the cloud's keys of the YAML file."""

from __future__ import annotations

import socket
from decimal import Decimal

from pydantic import Field, SecretStr

from storelink.settings import StorelinkSettings


def _default_client_id() -> str:
    # Stable across restarts, so that the broker resumes the worker's session and redelivers
    # what it had not acknowledged. Two workers on one host need one each (see the setting).
    return f"storelink-cloud-{socket.gethostname()}"


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
        description="MQTT client id of this ingest worker: unique among the workers, and the same "
        "across its restarts, so that the broker keeps its session and redelivers what it did not "
        "acknowledge (default storelink-cloud-<hostname>; set one per worker when several run on "
        "one host)",
    )
    mqtt_shared_group: str = Field(
        default="storelink",
        pattern=r"^[^/+#]+$",
        description="MQTT 5 shared subscription group: the workers of one group split the "
        "presence events between them ($share/<group>/storelink/v1/+/+/presence)",
    )
    mqtt_session_expiry_s: int = Field(
        default=3600,
        ge=0,
        description="MQTT 5: how long the broker keeps a stopped worker's session, queueing its "
        "share of the events until it reconnects",
    )
    ingest_batch_size: int = Field(
        default=500,
        ge=1,
        le=10000,
        description="most presence events the ingest commits in one transaction",
    )
    ingest_batch_wait_s: float = Field(
        default=0.0,
        ge=0,
        description="longest an event waits for others to share its transaction; 0: a batch is "
        "what arrived while the previous one committed, so batches grow with the load and an "
        "event never waits for company",
    )
