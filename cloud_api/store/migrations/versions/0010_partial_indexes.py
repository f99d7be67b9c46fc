"""Partial indexes: only the rows a query reads by them, so that a batch of events writes fewer.

Each batch of the ingest wrote about a page per event to the database (its write-ahead log),
and a quarter of those were the index of every event by store and time, which took an entry
at each store's end in every batch. Only the zone heatmap reads events by store and time, and
only exits; app check-ins look up the app's own events by ref. The indexes of events and
visits by shopper held the anonymous ones too, nine in ten, under NULL.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# (name, table, columns, condition). New names, so that a DBA can build them beforehand
# (CREATE INDEX CONCURRENTLY, on a large PostgreSQL database) while the old ones still serve.
_PARTIAL = (
    ("ix_presence_events_store_exits", "presence_events", ["store_id", "ts"], "kind = 'exit'"),
    ("ix_presence_events_checkins", "presence_events", ["subject_ref", "ts"], "source = 'app'"),
    (
        "ix_presence_events_tracked_shopper",
        "presence_events",
        ["shopper_id"],
        "shopper_id IS NOT NULL",
    ),
    (
        "ix_visits_tracked_shopper",
        "visits",
        ["shopper_id", "store_id", "ended_at"],
        "shopper_id IS NOT NULL",
    ),
)
# (name, table, columns): what they replace.
_REPLACED = (
    ("ix_presence_events_store_ts", "presence_events", ["store_id", "ts"]),
    ("ix_presence_events_shopper_id", "presence_events", ["shopper_id"]),
    ("ix_visits_shopper", "visits", ["shopper_id", "store_id", "ended_at"]),
)


def upgrade() -> None:
    for name, table, columns, where in _PARTIAL:
        condition = sa.text(where)
        op.create_index(
            name,
            table,
            columns,
            if_not_exists=True,
            sqlite_where=condition,
            postgresql_where=condition,
        )
    for name, table, _ in _REPLACED:
        op.drop_index(name, table_name=table, if_exists=True)


def downgrade() -> None:
    for name, table, columns in _REPLACED:
        op.create_index(name, table, columns, if_not_exists=True)
    for name, table, _, _ in _PARTIAL:
        op.drop_index(name, table_name=table, if_exists=True)
