"""The cloud's tables, as typed SQLAlchemy 2 mappings.

Every timestamp is stored and returned as timezone-aware UTC, on SQLite as on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from storelink.wire import PresenceKind

SHOPPER_ID_LENGTH = 40

# 64-bit keys for the tables that grow with traffic (a 32-bit id lasts days at 20,000 events/s);
# on SQLite the rowid is 64-bit already, and only INTEGER PRIMARY KEY autoincrements.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in and out; SQLite keeps no zone, so what it returns is read as UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"refusing to store a naive datetime: {value!r}")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# Named constraints, the same on SQLite and PostgreSQL: a later migration can drop or alter one by
# name, which SQLite's batch mode needs (it cannot address an unnamed constraint).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UtcDateTime,
        Decimal: sa.Numeric(12, 2),
        list[Any]: sa.JSON,
        list[str]: sa.JSON,
        list[dict[str, Any]]: sa.JSON,
        dict[str, Any]: sa.JSON,
    }


class Shopper(Base):
    __tablename__ = "shoppers"

    id: Mapped[str] = mapped_column(sa.String(SHOPPER_ID_LENGTH), primary_key=True)
    display_name: Mapped[str | None] = mapped_column(sa.String(100))
    # The secret behind the app's rotating token; it leaves the cloud once, at registration.
    app_key: Mapped[bytes] = mapped_column(sa.LargeBinary(32))
    consent_personal_offers: Mapped[bool]
    consent_footfall_analytics: Mapped[bool]
    consent_text_version: Mapped[str] = mapped_column(sa.String(64))
    consent_at: Mapped[datetime]
    created_at: Mapped[datetime]


class DirectoryVersion(Base):
    """One row, bumped with every registration and consent change in the same transaction.

    Each cloud worker keeps the consenting shoppers' tokens in memory (``directory``); it
    compares this number at every batch, so a change made through one worker reaches the
    ingest of all of them at once.
    """

    __tablename__ = "directory_version"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(sa.BigInteger)


class Cart(Base):
    """The shopper's online cart, as the e-commerce platform last reported it."""

    __tablename__ = "carts"

    cart_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    shopper_id: Mapped[str] = mapped_column(sa.ForeignKey("shoppers.id"), index=True)
    items: Mapped[list[dict[str, Any]]]
    total: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(sa.String(3))
    status: Mapped[str] = mapped_column(sa.String(16))
    updated_at: Mapped[datetime]
    # Where the shopper can pick the cart up again online (Shopify's abandoned_checkout_url).
    checkout_url: Mapped[str | None] = mapped_column(sa.Text)


def partial_index(name: str, *columns: sa.Column[Any], where: sa.ColumnElement[bool]) -> sa.Index:
    """An index of only the rows ``where`` holds, on SQLite and PostgreSQL alike.

    A query uses it only where the planner can tell from the query alone that every row it
    wants is in the index. ``column = ...`` or ``IN`` says ``IS NOT NULL``; a condition on a
    value must be in the query itself, with the value written into the SQL: PostgreSQL plans a
    worker's prepared statement once for any values, and a bound parameter then could be
    anything (tests/test_cloud_indexes.py). So such conditions are built with ``literally``,
    once, and the queries use the index's own (``EXIT_EVENTS``, ``APP_CHECKINS``).
    """
    return sa.Index(name, *columns, sqlite_where=where, postgresql_where=where)


def literally(value: str) -> sa.BindParameter[str]:
    """``value`` written into the SQL of a statement rather than bound to it."""
    return sa.literal(value, literal_execute=True)


# What the shopper app's check-ins record as their source (gateways record "gateway").
APP_CHECKIN_SOURCE = "app"


class PresenceEventRow(Base):
    __tablename__ = "presence_events"
    # Few indexes, and partial ones (below the class): each costs every insert, and events
    # arrive by the thousand a second.

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.String(26), unique=True)
    store_id: Mapped[str] = mapped_column(sa.String(64))
    gateway_id: Mapped[str] = mapped_column(sa.String(64))
    zone_id: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[str] = mapped_column(sa.String(8))
    subject_type: Mapped[str] = mapped_column(sa.String(16))
    subject_ref: Mapped[str] = mapped_column(sa.String(128))
    shopper_id: Mapped[str | None] = mapped_column(sa.ForeignKey("shoppers.id"))
    ts: Mapped[datetime]
    dwell_s: Mapped[float]
    rssi: Mapped[float]
    distance_m: Mapped[float | None]
    received_at: Mapped[datetime]
    # gateway: a gateway saw the subject; app: the shopper app's region monitoring checked in.
    source: Mapped[str] = mapped_column(sa.String(8), server_default="gateway")
    # The ingest worker (its MQTT client id) whose stitcher process makes visits of the event;
    # None when the worker stitched it in the same transaction (see ingest.stitcher).
    received_by: Mapped[str | None] = mapped_column(sa.String(128))


# The events as a Core table, as VISITS below.
EVENTS: sa.Table = Base.metadata.tables[PresenceEventRow.__tablename__]
# An index over every event by store and time took an entry at each store's end in every batch
# (a quarter of the pages a batch wrote): only the zone heatmap reads events by store and time,
# and only exits. App check-ins look up the app's own events by ref.
EXIT_EVENTS = EVENTS.c.kind == literally(PresenceKind.EXIT.value)
APP_CHECKINS = EVENTS.c.source == literally(APP_CHECKIN_SOURCE)
partial_index("ix_presence_events_store_exits", EVENTS.c.store_id, EVENTS.c.ts, where=EXIT_EVENTS)
partial_index("ix_presence_events_checkins", EVENTS.c.subject_ref, EVENTS.c.ts, where=APP_CHECKINS)
partial_index(
    "ix_presence_events_tracked_shopper",
    EVENTS.c.shopper_id,
    where=EVENTS.c.shopper_id.is_not(None),
)


class Visit(Base):
    """One subject's time in one store, stitched from presence events (see ``visits``)."""

    __tablename__ = "visits"
    __table_args__ = (
        # The ingest looks up the latest visits of a batch's subjects by ref (nearly unique)
        # or by tracked shopper; the API lists a store's visits newest first.
        sa.Index("ix_visits_subject", "subject_ref", "store_id", "subject_type", "ended_at"),
        sa.Index("ix_visits_store_started", "store_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[str] = mapped_column(sa.String(64))
    subject_type: Mapped[str] = mapped_column(sa.String(16))
    subject_ref: Mapped[str] = mapped_column(sa.String(128))
    shopper_id: Mapped[str | None] = mapped_column(sa.ForeignKey("shoppers.id"))
    started_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    zones: Mapped[list[str]]
    # "zone/ref" -> [epoch seconds of its latest event, 1 if present then else 0]: the latest
    # event by time wins, whatever order the events arrive in (see ``visits``).
    presence: Mapped[dict[str, Any]]
    dwell_s: Mapped[float]


# The visits as a Core table: the ingest's and the campaigns' statements on it are built once.
VISITS: sa.Table = Base.metadata.tables[Visit.__tablename__]
# Most visits are anonymous: only the tracked shoppers' are indexed by shopper.
partial_index(
    "ix_visits_tracked_shopper",
    VISITS.c.shopper_id,
    VISITS.c.store_id,
    VISITS.c.ended_at,
    where=VISITS.c.shopper_id.is_not(None),
)


class Offer(Base):
    __tablename__ = "offers"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    shopper_id: Mapped[str] = mapped_column(sa.ForeignKey("shoppers.id"), index=True)
    store_id: Mapped[str] = mapped_column(sa.String(64))
    # None: a campaign whose reward does not depend on a cart (a store-enter welcome offer).
    cart_id: Mapped[str | None] = mapped_column(sa.ForeignKey("carts.cart_id"))
    visit_id: Mapped[int | None] = mapped_column(BigId, sa.ForeignKey("visits.id"))
    # One of the two is set: the reward's kind.
    percent_off: Mapped[Decimal | None] = mapped_column(sa.Numeric(5, 2))
    items: Mapped[list[dict[str, Any]]]
    currency: Mapped[str] = mapped_column(sa.String(3))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    redeemed_at: Mapped[datetime | None]
    # Not a foreign key: the built-in default campaign lives in the settings, not in a row.
    campaign_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    amount_off: Mapped[Decimal | None]
    min_spend: Mapped[Decimal | None]
    online: Mapped[bool] = mapped_column(server_default=sa.false())
    order_ref: Mapped[str | None] = mapped_column(sa.String(128))


class Notification(Base):
    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    notification_id: Mapped[str] = mapped_column(sa.String(26), unique=True)
    shopper_id: Mapped[str] = mapped_column(sa.ForeignKey("shoppers.id"), index=True)
    offer_code: Mapped[str] = mapped_column(sa.ForeignKey("offers.code"))
    topic: Mapped[str] = mapped_column(sa.String(256))
    payload: Mapped[dict[str, Any]]
    # When it was made (and queued in the outbox, ``notification_deliveries``).
    published_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
    opened_at: Mapped[datetime | None]


class GatewayStatusRow(Base):
    """The latest status each gateway reported."""

    __tablename__ = "gateway_status"

    store_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    gateway_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    state: Mapped[str] = mapped_column(sa.String(16))
    ts: Mapped[datetime]
    version: Mapped[str] = mapped_column(sa.String(64))
    adverts_seen: Mapped[int] = mapped_column(sa.BigInteger)
    events_published: Mapped[int] = mapped_column(sa.BigInteger)
    decode_errors: Mapped[int] = mapped_column(sa.BigInteger)
    outbox_depth: Mapped[int] = mapped_column(sa.BigInteger)
    outbox_dropped: Mapped[int] = mapped_column(sa.BigInteger)
    uptime_s: Mapped[float | None]
    adverts_per_s: Mapped[float | None]
    cpu_temp_c: Mapped[float | None]
    scanner_restarts: Mapped[int] = mapped_column(sa.BigInteger, server_default="0")
    config_version: Mapped[int | None] = mapped_column(sa.BigInteger)
    config_error: Mapped[str | None] = mapped_column(sa.Text)
    received_at: Mapped[datetime]
    passers_by: Mapped[int] = mapped_column(sa.BigInteger, server_default="0")


class GatewayTraffic(Base):
    """Passers-by a gateway heard, per UTC hour: the denominator of the capture rate.

    The status carries a counter since the gateway started; each newer status adds its increase
    to the hour it was sent in.
    """

    __tablename__ = "gateway_traffic"

    store_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    gateway_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    passers_by: Mapped[int] = mapped_column(sa.BigInteger)


class BeaconHealthRow(Base):
    """The latest health of each store beacon, as the gateway that hears it last reported."""

    __tablename__ = "beacon_health"

    store_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    gateway_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    beacon_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    ts: Mapped[datetime]
    missing: Mapped[bool]
    last_seen: Mapped[datetime | None]
    rssi: Mapped[float | None]
    battery_mv: Mapped[int | None]
    temperature_c: Mapped[float | None]
    telemetry_at: Mapped[datetime | None]


# --- stores, zones, provisioned gateways, staff accounts, API keys (revision 0003) ---------------


class Store(Base):
    """A shop: what its gateways share (calibration, beacons, the app's UUID) and its zones."""

    __tablename__ = "stores"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    timezone: Mapped[str] = mapped_column(sa.String(64))
    app_uuid: Mapped[str | None] = mapped_column(sa.String(36))
    # storelink.wire.Calibration as JSON: RSSI at 1 m by beacon and by device class.
    calibration: Mapped[dict[str, Any]]
    staff_beacons: Mapped[list[str]]
    store_beacons: Mapped[list[str]]
    created_at: Mapped[datetime]


class Zone(Base):
    """An area of a store's floor plan, as a polygon in metres."""

    __tablename__ = "zones"

    store_id: Mapped[str] = mapped_column(sa.ForeignKey("stores.id"), primary_key=True)
    zone_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    polygon: Mapped[list[Any]]
    created_at: Mapped[datetime]


class Gateway(Base):
    """A provisioned gateway; its id is also its MQTT user name, so it is unique in the chain."""

    __tablename__ = "gateways"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    store_id: Mapped[str] = mapped_column(sa.ForeignKey("stores.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    # storelink.wire.ZoneConfig dicts: the zones this gateway detects, and their distances.
    zones: Mapped[list[dict[str, Any]]]
    # Mosquitto's own PBKDF2-SHA512 line format ($7$...), written as is to its password file.
    mqtt_password_hash: Mapped[str] = mapped_column(sa.String(256))
    # Added to every RSSI it measures (storelink.wire.GatewayConfig); None: its local setting.
    rssi_offset_db: Mapped[float | None]
    config_version: Mapped[int] = mapped_column(sa.BigInteger)
    created_at: Mapped[datetime]


class GatewayStatusHistory(Base):
    """Every status a gateway reported that was newer than the stored one: its online/offline
    transitions and heartbeat counters over time."""

    __tablename__ = "gateway_status_history"
    __table_args__ = (
        sa.Index("ix_gateway_status_history_gateway_ts", "store_id", "gateway_id", "ts"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[str] = mapped_column(sa.String(64))
    gateway_id: Mapped[str] = mapped_column(sa.String(64))
    state: Mapped[str] = mapped_column(sa.String(16))
    # True when the state differs from the gateway's previous status (or it is the first one).
    transition: Mapped[bool]
    ts: Mapped[datetime]
    adverts_seen: Mapped[int] = mapped_column(sa.BigInteger)
    events_published: Mapped[int] = mapped_column(sa.BigInteger)
    decode_errors: Mapped[int] = mapped_column(sa.BigInteger)
    outbox_depth: Mapped[int] = mapped_column(sa.BigInteger)
    outbox_dropped: Mapped[int] = mapped_column(sa.BigInteger)
    scanner_restarts: Mapped[int] = mapped_column(sa.BigInteger)
    uptime_s: Mapped[float | None]
    adverts_per_s: Mapped[float | None]
    cpu_temp_c: Mapped[float | None]
    received_at: Mapped[datetime]


class StaffAccount(Base):
    __tablename__ = "staff_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    # scrypt$<n>$<r>$<p>$<salt>$<hash>, see cloud_api.auth.auth
    password_hash: Mapped[str] = mapped_column(sa.String(256))
    created_at: Mapped[datetime]


class StaffStore(Base):
    """A store a staff member may see."""

    __tablename__ = "staff_stores"

    staff_id: Mapped[int] = mapped_column(sa.ForeignKey("staff_accounts.id"), primary_key=True)
    store_id: Mapped[str] = mapped_column(sa.ForeignKey("stores.id"), primary_key=True)


class StaffToken(Base):
    """A login: the token's SHA-256 (the token itself is random and leaves only in the reply)."""

    __tablename__ = "staff_tokens"

    token_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    staff_id: Mapped[int] = mapped_column(sa.ForeignKey("staff_accounts.id"), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class ApiKey(Base):
    """An integration's key (a till, an e-commerce platform), kept as its SHA-256."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    # The key's first characters, to tell keys apart in a listing without revealing them.
    prefix: Mapped[str] = mapped_column(sa.String(16))
    name: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class ApiKeyStore(Base):
    """A store an API key may act for."""

    __tablename__ = "api_key_stores"

    api_key_id: Mapped[int] = mapped_column(sa.ForeignKey("api_keys.id"), primary_key=True)
    store_id: Mapped[str] = mapped_column(sa.ForeignKey("stores.id"), primary_key=True)


# --- shoppers: consent history, devices, commerce identities, orders, social events ------------


class ConsentRecord(Base):
    """One grant or withdrawal of one purpose, kept for ever (until erasure): the proof of consent.

    The shopper's current answers are the ``consent_*`` columns of ``shoppers``, updated in the
    same transaction, so that the ingest reads one row per shopper.
    """

    __tablename__ = "consent_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    shopper_id: Mapped[str] = mapped_column(sa.ForeignKey("shoppers.id"), index=True)
    purpose: Mapped[str] = mapped_column(sa.String(32))
    granted: Mapped[bool]
    text_version: Mapped[str] = mapped_column(sa.String(64))
    at: Mapped[datetime]


class ShopperDevice(Base):
    """A wearable (resolved by the gateways with its IRK) or a loyalty key fob (an iBeacon)."""

    __tablename__ = "shopper_devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    shopper_id: Mapped[str] = mapped_column(sa.ForeignKey("shoppers.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    # The subject ref gateways publish for it: the cloud's ``wear-...`` for a wearable, the
    # beacon's ``uuid.major.minor`` for a key fob.
    ref: Mapped[str] = mapped_column(sa.String(128), unique=True)
    irk: Mapped[bytes | None] = mapped_column(sa.LargeBinary(16))
    # A wearable's IRK goes to this store's gateways only (each IRK costs every address an AES
    # operation on the gateway); null: to every store.
    store_id: Mapped[str | None] = mapped_column(sa.String(64))
    label: Mapped[str | None] = mapped_column(sa.String(100))
    created_at: Mapped[datetime]


class ShopperIdentity(Base):
    """How a commerce platform names the shopper: a Shopify customer id, an e-mail's SHA-256."""

    __tablename__ = "shopper_identities"
    __table_args__ = (sa.UniqueConstraint("kind", "value"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shopper_id: Mapped[str] = mapped_column(sa.ForeignKey("shoppers.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    value: Mapped[str] = mapped_column(sa.String(128))


class WebhookDelivery(Base):
    """Webhook ids already processed: a platform's retry of one is acknowledged, not applied."""

    __tablename__ = "webhook_deliveries"

    source: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    topic: Mapped[str] = mapped_column(sa.String(64))
    received_at: Mapped[datetime]


class Order(Base):
    """An order, online or at the till; it converts its cart and redeems its codes."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_ref: Mapped[str] = mapped_column(sa.String(128), unique=True)
    shopper_id: Mapped[str | None] = mapped_column(sa.ForeignKey("shoppers.id"), index=True)
    cart_id: Mapped[str | None] = mapped_column(sa.String(128))
    store_id: Mapped[str | None] = mapped_column(sa.String(64))
    channel: Mapped[str] = mapped_column(sa.String(8))
    items: Mapped[list[dict[str, Any]]]
    total: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(sa.String(3))
    discount_codes: Mapped[list[str]]
    ordered_at: Mapped[datetime]
    received_at: Mapped[datetime]


class ShopperEvent(Base):
    """What the app reports the shopper did for the retailer: a referral, a share."""

    __tablename__ = "shopper_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    shopper_id: Mapped[str] = mapped_column(sa.ForeignKey("shoppers.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    at: Mapped[datetime]
    received_at: Mapped[datetime]


# --- campaigns: definitions, decisions, delivery outbox -------------------------------------


class CampaignRow(Base):
    """A campaign as the API or the campaigns file defined it (``campaigns.CampaignSpec``)."""

    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    # The whole specification, validated by ``CampaignSpec`` on the way in and out.
    spec: Mapped[dict[str, Any]]
    # api or file: a restart reloads the file's campaigns and leaves the API's alone.
    source: Mapped[str] = mapped_column(sa.String(8))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class CampaignDecision(Base):
    """Why a campaign did or did not make a shopper an offer at one presence event."""

    __tablename__ = "campaign_decisions"
    __table_args__ = (
        sa.Index("ix_campaign_decisions_shopper", "shopper_id", "decided_at"),
        sa.Index("ix_campaign_decisions_store", "store_id", "decided_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[str] = mapped_column(sa.String(64))
    shopper_id: Mapped[str] = mapped_column(sa.ForeignKey("shoppers.id"))
    store_id: Mapped[str] = mapped_column(sa.String(64))
    event_id: Mapped[str] = mapped_column(sa.String(26))
    # offered, held_out (would have received it) or ineligible.
    outcome: Mapped[str] = mapped_column(sa.String(12))
    checks: Mapped[list[dict[str, Any]]]
    cart_id: Mapped[str | None] = mapped_column(sa.String(128))
    offer_code: Mapped[str | None] = mapped_column(sa.String(32))
    decided_at: Mapped[datetime]
    visit_started_at: Mapped[datetime | None]


class NotificationDelivery(Base):
    """The transactional outbox: one row per notification and channel, pending until sent."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("notification_id", "channel"),
        sa.Index("ix_notification_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    notification_id: Mapped[str] = mapped_column(sa.ForeignKey("notifications.notification_id"))
    channel: Mapped[str] = mapped_column(sa.String(16))
    # pending, sent, or failed (gave up after the last retry).
    status: Mapped[str] = mapped_column(sa.String(8))
    attempts: Mapped[int]
    next_attempt_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(sa.Text)


# --- time series kept in SQL when no InfluxDB is configured (cloud_api.timeseries) -------------


class TimeSeriesPoint(Base):
    """One time-series point; never a shopper or a subject in its tags or fields."""

    __tablename__ = "timeseries_points"
    __table_args__ = (
        # A point written again (a retried batch) overwrites itself, as in InfluxDB.
        sa.UniqueConstraint("measurement", "series", "time_ns"),
        sa.Index("ix_timeseries_points_measurement_ts", "measurement", "ts"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    measurement: Mapped[str] = mapped_column(sa.String(32))
    # The measurement and its sorted tags, as line protocol writes them.
    series: Mapped[str] = mapped_column(sa.String(512))
    time_ns: Mapped[int] = mapped_column(sa.BigInteger)
    ts: Mapped[datetime]
    tags: Mapped[dict[str, Any]]
    fields: Mapped[dict[str, Any]]


class StitchMark(Base):
    """How far a worker's stitcher process got through the events its receiver stored.

    Events are stitched in id order, and one receiver's transactions follow each other, so
    everything up to ``stitched_to`` has its visits and offers; the time-series points of
    everything up to ``points_to`` are written or buffered on disk.
    """

    __tablename__ = "stitch_marks"

    worker: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    stitched_to: Mapped[int] = mapped_column(sa.BigInteger)
    points_to: Mapped[int] = mapped_column(sa.BigInteger)
    updated_at: Mapped[datetime]


STITCH_MARKS: sa.Table = Base.metadata.tables[StitchMark.__tablename__]


class VisitVersion(Base):
    """One row, counting every change to ``visits`` on SQLite (triggers; see migration 0011
    and ``ingest.visit_cache``). Unused on PostgreSQL."""

    __tablename__ = "visit_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    n: Mapped[int] = mapped_column(sa.BigInteger)
