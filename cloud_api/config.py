"""Cloud settings: ``STORELINK_*`` variables or the cloud's keys of the YAML file."""

from __future__ import annotations

import socket
from decimal import Decimal
from pathlib import Path
from typing import Literal

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
    admin_token: SecretStr | None = Field(
        default=None,
        description="the administrator's bearer token (Authorization: Bearer <token>): creates "
        "stores, gateways, staff accounts and API keys, and reads every store; while unset the "
        "admin endpoints answer 503. Use a long random string (openssl rand -hex 32)",
    )
    staff_token_ttl_s: float = Field(
        default=12 * 3600.0,
        gt=0,
        description="how long a staff member's login token (POST /v1/auth/login) stays valid",
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
    campaigns_file: Path | None = Field(
        default=None,
        description="YAML file of campaigns (campaigns: [...], see docs/engagement.md), loaded "
        "into the database at start; while no campaign is defined, the abandoned-cart offer of "
        "the offer_* settings applies",
    )
    offers_per_shopper_per_day: int | None = Field(
        default=1,
        ge=1,
        description="offers a shopper gets in 24 h across all campaigns (a holdout 'would have "
        "received' counts); null: no cap",
    )
    push_webhook_url: str | None = Field(
        default=None,
        description="the retailer's push service: every offer notification is POSTed there too, "
        "signed with push_webhook_secret (X-Storelink-Signature), retried with backoff",
    )
    push_webhook_secret: SecretStr | None = Field(
        default=None, description="signs the notifications POSTed to push_webhook_url"
    )
    notification_max_attempts: int = Field(
        default=8,
        ge=1,
        description="delivery attempts per notification and channel before it is marked failed",
    )
    mqtt_enabled: bool = Field(
        default=True, description="consume presence from the MQTT broker (off: HTTP API only)"
    )
    mqtt_client_id: str = Field(
        default_factory=_default_client_id,
        min_length=1,
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
        default=1000,
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
    ingest_stitcher: Literal["inline", "process", "external"] = Field(
        default="inline",
        description="inline: each ingest transaction stores the events and stitches them into "
        "visits and offers; process: the worker stores and acknowledges the events, and a "
        "stitcher process beside it stitches them from the events table, so that the two use "
        "two CPU cores (offers then reach the shopper through the outbox, within about a "
        "second); external: as process, but the worker starts no stitcher: run `storelink cloud "
        "stitch` with the same settings where there are cores for it (another host, on "
        "PostgreSQL)",
    )
    ingest_stitch_batch_size: int | None = Field(
        default=None,
        ge=1,
        le=20000,
        description="with the stitcher process: most events it stitches in one transaction "
        "(default: 1,000 on SQLite, 3,000 on PostgreSQL); larger batches cost it less per "
        "event, and on SQLite hold the write lock longer while the worker beside it waits",
    )
    ingest_stitch_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="with the stitcher process: how much lower its CPU priority is than the "
        "worker's (Unix niceness added). The worker acknowledges events and is waited for; the "
        "stitcher catches up in larger batches when it falls behind, so when the cores are "
        "busy it is the one that waits",
    )
    ingest_stitch_poll_s: float = Field(
        default=0.005,
        gt=0,
        le=1,
        description="with the stitcher process: how long it waits before looking again for "
        "stored events once it has stitched them all",
    )
    min_store_stay_s: float = Field(
        default=60.0,
        ge=0,
        description="footfall statistics: a shorter stay in the store is not a visit (someone "
        "who stepped in and out, a phone carried past the door)",
    )
    min_zone_stay_s: float = Field(
        default=30.0,
        ge=0,
        description="footfall statistics: a shorter stay in a zone is not counted",
    )
    app_signature_max_skew_s: float = Field(
        default=300.0,
        gt=0,
        description="shopper app requests: how far their signed X-Storelink-Timestamp may be from "
        "the cloud's clock (replay window)",
    )
    shopify_webhook_secret: SecretStr | None = Field(
        default=None,
        description="the Shopify app's client secret, which signs its webhooks "
        "(X-Shopify-Hmac-Sha256); while unset /v1/webhooks/shopify answers 503",
    )
    loyalty_window_days: float = Field(
        default=90.0, gt=0, description="loyalty: visits and orders are counted over this window"
    )
    loyalty_regular_visits: int = Field(
        default=3, ge=1, description="loyalty: this many visits in the window make a regular"
    )
    loyalty_regular_orders: int = Field(
        default=2, ge=1, description="loyalty: or this many orders in the window"
    )
    loyalty_loyal_visits: int = Field(
        default=8, ge=1, description="loyalty: this many visits in the window make a loyal shopper"
    )
    loyalty_loyal_orders: int = Field(
        default=5, ge=1, description="loyalty: or this many orders in the window"
    )
    loyalty_at_risk_after_days: float = Field(
        default=45.0,
        gt=0,
        description="loyalty: a shopper with at least the regular's activity in all, and none "
        "for this many days, is at risk (lapsed)",
    )
    influx_url: str | None = Field(
        default=None,
        description="time series: InfluxDB's URL (http://influxdb:8086); unset: the points go to "
        "the SQL database (table timeseries_points), so a demo needs no InfluxDB",
    )
    influx_api: Literal["v1", "v2"] = Field(
        default="v2",
        description="time series: v2 writes to a 2.x bucket with a token; v1 writes to a 1.x "
        "database (/write), as the InfluxDB 1.x of a 32-bit Raspberry Pi serves it",
    )
    influx_database: str = Field(
        default="storelink",
        description="time series: the 1.x database (v1), and the name InfluxQL reads use on 2.x "
        "(the bucket's DBRP mapping)",
    )
    influx_bucket: str = Field(default="storelink", description="time series: the 2.x bucket")
    influx_org: str = Field(default="storelink", description="time series: the 2.x organisation")
    influx_token: SecretStr | None = Field(
        default=None, description="time series: the 2.x API token (write to the bucket)"
    )
    influx_user: str | None = Field(default=None, description="time series: the 1.x user")
    influx_password: SecretStr | None = Field(
        default=None, description="time series: the 1.x user's password"
    )
    influx_batch_size: int = Field(
        default=1000, ge=1, le=50000, description="time series: most points in one write"
    )
    influx_flush_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="time series: longest a point waits for others to share its write",
    )
    timeseries_buffer_path: Path = Field(
        default=Path("storelink-timeseries-buffer.db"),
        description="time series: SQLite file that keeps the points while InfluxDB is "
        "unreachable; they are written when it is back",
    )
    timeseries_buffer_max_points: int = Field(
        default=1_000_000,
        ge=1,
        description="time series: most points the buffer keeps; past it the oldest are dropped "
        "(and counted)",
    )
    timeseries_occupancy_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="time series: how often the occupancy of every store with visitors is recorded",
    )
