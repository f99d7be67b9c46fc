"""Keyset pagination: ``?limit=&cursor=``, and ``next_cursor`` in the page.

A cursor holds the sort key of the page's last row (base64url JSON, opaque to clients), so the
next page starts right after it however many rows arrive in between: no row is skipped or shown
twice, and a deep page costs as little as the first.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import sqlalchemy as sa
from fastapi import HTTPException, Query, status
from sqlalchemy.orm import InstrumentedAttribute, Session

R = TypeVar("R")

Cursor = Annotated[
    str | None,
    Query(max_length=512, description="next_cursor of the previous page; none: the first page"),
]
PageLimit = Annotated[int, Query(ge=1, le=1000, description="at most this many items a page")]
Direction = Literal["asc", "desc"]


def encode_cursor(values: Sequence[Any]) -> str:
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode()


def _bad_cursor() -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        "cursor: not a cursor of this list (pass next_cursor of the previous page unchanged)",
    )


def decode_cursor(cursor: str, columns: Sequence[InstrumentedAttribute[Any]]) -> list[Any]:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _bad_cursor() from None
    if not isinstance(values, list) or len(values) != len(columns):
        raise _bad_cursor()
    decoded = []
    for value, column in zip(values, columns, strict=True):
        column_type = column.type
        if isinstance(column_type, sa.TypeDecorator):
            column_type = column_type.impl_instance
        kind = column_type.python_type
        try:
            if kind is datetime:
                decoded.append(datetime.fromisoformat(value))
            elif isinstance(value, kind) and not isinstance(value, bool):
                decoded.append(value)
            else:
                raise _bad_cursor()
        except (TypeError, ValueError):
            raise _bad_cursor() from None
    return decoded


def _after(
    order: Sequence[tuple[InstrumentedAttribute[Any], Direction]], values: Sequence[Any]
) -> sa.ColumnElement[bool]:
    """Rows after ``values`` in ``order``: (a > x) or (a = x and b > y) or ..."""
    clauses = []
    for index, (column, direction) in enumerate(order):
        beyond = column > values[index] if direction == "asc" else column < values[index]
        equal = [order[i][0] == values[i] for i in range(index)]
        clauses.append(sa.and_(*equal, beyond))
    return sa.or_(*clauses)


def paginate(
    session: Session,
    query: sa.Select[R],
    order: Sequence[tuple[InstrumentedAttribute[Any], Direction]],
    limit: int,
    cursor: str | None,
) -> tuple[list[R], str | None]:
    """The page of ``query`` (a select of one entity) after ``cursor``, and the next cursor.

    ``order`` must end with a unique column, so that the key names one row.
    """
    columns = [column for column, _ in order]
    if cursor is not None:
        query = query.where(_after(order, decode_cursor(cursor, columns)))
    query = query.order_by(
        *(column.asc() if direction == "asc" else column.desc() for column, direction in order)
    )
    rows = list(session.scalars(query.limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1]
    return rows, encode_cursor([getattr(last, column.key) for column in columns])
