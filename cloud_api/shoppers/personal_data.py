"""Everything held about a shopper: exported on request, erased on request.

Which rows are the shopper's is worked out from the schema rather than listed by hand, so a
table added later is covered without anyone remembering to: the shopper's own row; every row
of a table with a foreign key to a row that is theirs, transitively (their carts, then the
offers on those carts, then the notifications of those offers, ...); every row with a
``shopper_id`` or ``shopper_ref`` column naming them, foreign key or not; and every presence
event or visit under the ref of one of their wearables or key fobs. An app token ref needs the
app key to be linked to anyone, and the key goes with the shopper's row.
"""

from __future__ import annotations

import base64
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloud_api.store.models import Base, Shopper, ShopperDevice

_NAMED_COLUMNS = ("shopper_id", "shopper_ref")
_REF_COLUMN = "subject_ref"


def _linked(shopper_id: str, device_refs: list[str]) -> dict[str, sa.ColumnElement[bool]]:
    """For every table holding rows of the shopper, the condition that selects those rows."""
    shoppers = Base.metadata.tables[Shopper.__tablename__]
    conditions: dict[str, sa.ColumnElement[bool]] = {shoppers.name: shoppers.c.id == shopper_id}
    # Parents before children: a child's condition selects through its parents' conditions.
    for table in Base.metadata.sorted_tables:
        if table is shoppers:
            continue
        clauses: list[sa.ColumnElement[bool]] = []
        for fk in table.foreign_keys:
            parent = fk.column.table
            if parent.name in conditions and parent is not table:
                clauses.append(fk.parent.in_(sa.select(fk.column).where(conditions[parent.name])))
        clauses.extend(table.c[name] == shopper_id for name in _NAMED_COLUMNS if name in table.c)
        if device_refs and _REF_COLUMN in table.c:
            clauses.append(table.c[_REF_COLUMN].in_(device_refs))
        if clauses:
            conditions[table.name] = sa.or_(*clauses)
    return conditions


def _device_refs(session: Session, shopper_id: str) -> list[str]:
    return list(
        session.scalars(sa.select(ShopperDevice.ref).where(ShopperDevice.shopper_id == shopper_id))
    )


def _jsonable(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b16encode(value).decode().lower()
    return value


def export_shopper(session: Session, shopper_id: str) -> dict[str, list[dict[str, Any]]]:
    """``{table: [row, ...]}`` of every row held about the shopper, keys and all, as JSON."""
    conditions = _linked(shopper_id, _device_refs(session, shopper_id))
    export: dict[str, list[dict[str, Any]]] = {}
    for table in Base.metadata.sorted_tables:
        condition = conditions.get(table.name)
        if condition is None:
            continue
        rows = session.execute(sa.select(table).where(condition)).mappings()
        found = [{key: _jsonable(v) for key, v in row.items()} for row in rows]
        if found:
            export[table.name] = found
    return export


def erase_shopper(session: Session, shopper_id: str) -> dict[str, int]:
    """Delete every row held about the shopper, in the caller's transaction; rows per table."""
    conditions = _linked(shopper_id, _device_refs(session, shopper_id))
    erased: dict[str, int] = {}
    # Children first, while the parents their conditions select through still exist.
    for table in reversed(Base.metadata.sorted_tables):
        condition = conditions.get(table.name)
        if condition is None:
            continue
        result = session.execute(sa.delete(table).where(condition))
        count = result.rowcount if isinstance(result, sa.CursorResult) else 0
        if count:
            erased[table.name] = count
    return erased
