"""The stitcher process: which worker received an event, and how far its stitcher got; and a
count of the changes to visits, which tells an ingest process on SQLite that its cached visits
are still as it left them.

With ``STORELINK_INGEST_STITCHER=process`` a worker's receiving process stores and acknowledges
the events, and a stitcher process beside it makes visits and offers of them afterwards, in id
order, from the events table (see ``ingest.stitcher``). The new column is nullable and the
rest are new tables: nothing existing is rewritten.

``visit_versions`` holds one row, which triggers on ``visits`` count up on SQLite with every row
inserted, changed or deleted, by anyone (see ``ingest.visit_cache``). The receiving process
commits many times a second without touching visits, and SQLite's ``data_version``, which the
cache went by, changes with every commit of any table. PostgreSQL's cache checks row versions
instead, and a counter there would make every worker wait for the row: no triggers.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHANGES = ("INSERT", "UPDATE", "DELETE")


def upgrade() -> None:
    op.add_column("presence_events", sa.Column("received_by", sa.String(128), nullable=True))
    op.create_table(
        "stitch_marks",
        sa.Column("worker", sa.String(128), primary_key=True),
        sa.Column("stitched_to", sa.BigInteger(), nullable=False),
        sa.Column("points_to", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    versions = op.create_table(
        "visit_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(versions, [{"id": 1, "n": 0}])
    if op.get_bind().dialect.name == "sqlite":
        for change in _CHANGES:
            op.execute(
                f"CREATE TRIGGER visits_{change.lower()}_counted AFTER {change} ON visits "  # noqa: S608 (constant names)
                "BEGIN UPDATE visit_versions SET n = n + 1 WHERE id = 1; END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for change in _CHANGES:
            op.execute(f"DROP TRIGGER IF EXISTS visits_{change.lower()}_counted")
    op.drop_table("visit_versions")
    op.drop_table("stitch_marks")
    # SQLite drops a column in place since 3.35 (no copy of the table, which would lose the
    # partial indexes' conditions).
    op.drop_column("presence_events", "received_by")
