"""PostgreSQL: ``storelink_json_values``, a JSON array's elements as rows, estimated at 10.

The ingest's lookups take their keys as one JSON array (``ingest.bulk.json_array``). The
planner estimates ``json_array_elements_text`` at 100 rows whatever the array holds, and joined
that to the visits by scanning all of them until the table had about 20,000. This function
returns the same rows with an estimate of 10, so a lookup is a handful of index searches once
the table holds a few thousand rows. Its ``SET search_path`` keeps PostgreSQL from inlining it,
which would lose the estimate. SQLite has nothing to change.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE FUNCTION storelink_json_values(elements json) RETURNS TABLE (value text) "
        "LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE ROWS 10 "
        "SET search_path = pg_catalog "
        "AS 'SELECT json_array_elements_text(elements)'"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION storelink_json_values(json)")
