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


class PresenceEventRow(Base):
    __tablename__ = "presence_events"
    # Few indexes: each one costs every insert, and events arrive by the thousand a second.
    __table_args__ = (sa.Index("ix_presence_events_store_ts", "store_id", "ts"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.String(26), unique=True)
    store_id: Mapped[str] = mapped_column(sa.String(64))
    gateway_id: Mapped[str] = mapped_column(sa.String(64))
    zone_id: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[str] = mapped_column(sa.String(8))
    subject_type: Mapped[str] = mapped_column(sa.String(16))
    subject_ref: Mapped[str] = mapped_column(sa.String(128))
    shopper_id: Mapped[str | None] = mapped_column(sa.ForeignKey("shoppers.id"), index=True)
    ts: Mapped[datetime]
    dwell_s: Mapped[float]
    rssi: Mapped[float]
    distance_m: Mapped[float | None]
    received_at: Mapped[datetime]


class Visit(Base):
    """One subject's time in one store, stitched from presence events (see ``visits``)."""

    __tablename__ = "visits"
    __table_args__ = (
        # The ingest looks up the latest visits of a batch's subjects by ref (nearly unique)
        # or by tracked shopper; the API lists a store's visits newest first.
        sa.Index("ix_visits_subject", "subject_ref", "store_id", "subject_type", "ended_at"),
        sa.Index("ix_visits_shopper", "shopper_id", "store_id", "ended_at"),
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


class Offer(Base):
    __tablename__ = "offers"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    shopper_id: Mapped[str] = mapped_column(sa.ForeignKey("shoppers.id"), index=True)
    store_id: Mapped[str] = mapped_column(sa.String(64))
    cart_id: Mapped[str] = mapped_column(sa.ForeignKey("carts.cart_id"))
    visit_id: Mapped[int | None] = mapped_column(BigId, sa.ForeignKey("visits.id"))
    percent_off: Mapped[Decimal] = mapped_column(sa.Numeric(5, 2))
    items: Mapped[list[dict[str, Any]]]
    currency: Mapped[str] = mapped_column(sa.String(3))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    redeemed_at: Mapped[datetime | None]


class Notification(Base):
    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    notification_id: Mapped[str] = mapped_column(sa.String(26), unique=True)
    shopper_id: Mapped[str] = mapped_column(sa.ForeignKey("shoppers.id"), index=True)
    offer_code: Mapped[str] = mapped_column(sa.ForeignKey("offers.code"))
    topic: Mapped[str] = mapped_column(sa.String(256))
    payload: Mapped[dict[str, Any]]
    published_at: Mapped[datetime]


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
