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


def _partial(name: str, table: str, columns: list[str], where: str) -> None:
    condition = sa.text(where)
    op.create_index(name, table, columns, sqlite_where=condition, postgresql_where=condition)


def upgrade() -> None:
    op.drop_index("ix_presence_events_store_ts", table_name="presence_events")
    op.drop_index("ix_presence_events_shopper_id", table_name="presence_events")
    op.drop_index("ix_visits_shopper", table_name="visits")
    _partial(
        "ix_presence_events_store_exits", "presence_events", ["store_id", "ts"], "kind = 'exit'"
    )
    _partial(
        "ix_presence_events_checkins", "presence_events", ["subject_ref", "ts"], "source = 'app'"
    )
    _partial(
        "ix_presence_events_shopper_id",
        "presence_events",
        ["shopper_id"],
        "shopper_id IS NOT NULL",
    )
    _partial(
        "ix_visits_shopper",
        "visits",
        ["shopper_id", "store_id", "ended_at"],
        "shopper_id IS NOT NULL",
    )


def downgrade() -> None:
    op.drop_index("ix_visits_shopper", table_name="visits")
    op.drop_index("ix_presence_events_shopper_id", table_name="presence_events")
    op.drop_index("ix_presence_events_checkins", table_name="presence_events")
    op.drop_index("ix_presence_events_store_exits", table_name="presence_events")
    op.create_index("ix_visits_shopper", "visits", ["shopper_id", "store_id", "ended_at"])
    op.create_index("ix_presence_events_shopper_id", "presence_events", ["shopper_id"])
    op.create_index("ix_presence_events_store_ts", "presence_events", ["store_id", "ts"])
