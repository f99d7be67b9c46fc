"""Many rows in one statement, the fastest way each database offers.

The ingest writes a few hundred events and visits per transaction. On PostgreSQL one
``INSERT ... SELECT FROM json_to_recordset(<the rows as one JSON parameter>)`` (or
``UPDATE ... FROM json_to_recordset``) does that in a single round trip with a fixed statement,
several times faster than SQLAlchemy's multi-row VALUES. SQLite, in-process, takes the driver's
``executemany`` at full speed.

Rows are dicts keyed by column name, with Python values as the models hold them: aware
datetimes, JSON-able lists and dicts. The SQL text is built from the models' own table and
column names (a key that is not a column fails the lookup) and every value is bound: the
``noqa: S608`` below mark that, not string-built values.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import cache
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from cloud_api.store.models import UtcDateTime

_PG = postgresql.dialect()  # type: ignore[no-untyped-call]
# How a column's Python values are written (None: as they are).
Converter = Callable[[Any], Any] | None


@cache
def _statement(sql: str) -> sa.TextClause:
    """The statement of ``sql``, made once: a batch runs the same few, and making one and running
    it through the ORM session cost more than PostgreSQL took to run it (see Batches in
    docs/scaling.md); the callers run it on the session's connection."""
    return sa.text(sql)


def _is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _pg_datetime(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"refusing to store a naive datetime: {value!r}")
    return value.isoformat()


def _pg_float(value: float | None) -> float | str | None:
    # JSON has no infinity or NaN; PostgreSQL reads them from text.
    return value if value is None or math.isfinite(value) else str(value)


@cache
def _pg_columns(table: sa.Table, names: tuple[str, ...]) -> tuple[str, tuple[Converter, ...]]:
    """The record definition for ``json_to_recordset``, and how each value goes into JSON."""
    definitions = []
    converters: list[Converter] = []
    for name in names:
        column_type = table.c[name].type
        definitions.append(f"{name} {column_type.compile(dialect=_PG)}")
        if isinstance(column_type, sa.DateTime | UtcDateTime):
            converters.append(_pg_datetime)
        elif isinstance(column_type, sa.Float):
            converters.append(_pg_float)
        elif isinstance(column_type, sa.String | sa.Integer | sa.Boolean | sa.JSON):
            converters.append(None)
        else:
            raise TypeError(f"no bulk PostgreSQL writes for {table.name}.{name} ({column_type})")
    return ", ".join(definitions), tuple(converters)


def _recordset(
    table: sa.Table, names: Sequence[str], rows: Sequence[dict[str, Any]]
) -> tuple[str, dict[str, str]]:
    """``FROM`` the rows as one JSON parameter, and that parameter.

    One JSON document (json.dumps is C) rather than one array per column: psycopg escapes
    array elements in Python, which cost more than the rest of the ingest on PostgreSQL.
    """
    definition, converters = _pg_columns(table, tuple(names))
    pairs = list(zip(names, converters, strict=True))
    records = [
        {name: row[name] if convert is None else convert(row[name]) for name, convert in pairs}
        for row in rows
    ]
    source = f"json_to_recordset(CAST(:records AS JSON)) AS u({definition})"
    return source, {"records": json.dumps(records)}


_SQLITE_DATETIME = "%04d-%02d-%02d %02d:%02d:%02d.%06d"


def _sqlite_datetime(value: datetime | None) -> str | None:
    """SQLAlchemy's SQLite DATETIME text for the UTC time (see models.UtcDateTime).

    Formatted from the fields: ``isoformat`` and cutting its offset off took twice as long,
    and an instant seen only once (an event's time) cost a cache more than it saved."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        if value.tzinfo is None:
            raise ValueError(f"refusing to store a naive datetime: {value!r}")
        value = value.astimezone(UTC)
    return _SQLITE_DATETIME % (
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
    )


_UNSEEN = object()


def _sqlite_datetimes(values: Iterable[datetime | None]) -> list[str | None]:
    """A column of a batch's times: one instant in a row (every event's received_at) is
    formatted once."""
    texts: list[str | None] = []
    last: object = _UNSEEN
    text = None
    for value in values:
        if value is not last:
            last, text = value, _sqlite_datetime(value)
        texts.append(text)
    return texts


class JsonText(str):
    """A JSON column's value already encoded, for SQLite (the ingest encodes a visit's presence
    faster than ``json.dumps`` does). PostgreSQL takes values, not text: do not pass one there."""


# sqlite3 binds an exact str, int, float or bytes as it is, and first tries to adapt anything
# else, None and str subclasses included: two attribute look-ups that fail, each raising and
# swallowing an AttributeError, a quarter of a microsecond a value (a visit row has a NULL or
# two and a JSON text or two). An adapter registered for the type is one dict look-up.
_NOTHING: dict[None, None] = {}
sqlite3.register_adapter(type(None), _NOTHING.get)  # a C function that gives None for None
sqlite3.register_adapter(JsonText, str)


def _sqlite_json(value: Any) -> str | None:
    if value is None or type(value) is JsonText:
        return value
    return json.dumps(value)


def _sqlite_jsons(values: Iterable[Any]) -> Iterable[str | None]:
    return map(_sqlite_json, values)


# How a column's values are bound on SQLite, a column at a time (None: as they are).
ColumnConverter = Callable[[Iterable[Any]], Iterable[Any]] | None


@cache
def _sqlite_converters(table: sa.Table, names: tuple[str, ...]) -> tuple[ColumnConverter, ...]:
    """How each column's values are bound on SQLite, as SQLAlchemy would (the tests check)."""
    converters: list[ColumnConverter] = []
    for name in names:
        column_type = table.c[name].type
        if isinstance(column_type, sa.JSON):
            converters.append(_sqlite_jsons)
        elif isinstance(column_type, sa.DateTime | UtcDateTime):
            converters.append(_sqlite_datetimes)
        elif isinstance(column_type, sa.String | sa.Integer | sa.Float | sa.Boolean):
            converters.append(None)
        else:
            raise TypeError(f"no bulk SQLite writes for {table.name}.{name} ({column_type})")
    return tuple(converters)


def _sqlite_rows(
    table: sa.Table, names: Sequence[str], rows: Sequence[dict[str, Any]]
) -> list[tuple[Any, ...]]:
    # C picks each row's values, and the columns that need it are converted a column at a
    # time, taken apart and put together again by zip: a loop over the rows in Python, or a
    # generator over every column of every row, cost more than the INSERT itself.
    pick: Callable[[dict[str, Any]], tuple[Any, ...]] = (
        itemgetter(*names) if len(names) > 1 else lambda row: (row[names[0]],)
    )
    picked = list(map(pick, rows))
    converted = [
        (position, convert)
        for position, convert in enumerate(_sqlite_converters(table, tuple(names)))
        if convert is not None
    ]
    if not converted or not picked:
        return picked
    columns: list[Iterable[Any]] = list(zip(*picked, strict=True))
    for position, convert in converted:
        columns[position] = convert(columns[position])
    return list(zip(*columns, strict=True))


class _JsonArrayElements(FunctionElement[Any]):
    """The elements of a JSON array, as rows of text: ``json_each`` on SQLite,
    ``storelink_json_values`` on PostgreSQL (``json_array_elements_text``, which the planner
    estimates at 100 rows, with an estimate of 10: see migration 0009). One construct for both,
    so that a statement using it is built once, at import, rather than for each batch and
    database."""

    name = "json_array_elements"
    inherit_cache = True


@compiles(_JsonArrayElements, "sqlite")
def _sqlite_json_elements(element: _JsonArrayElements, compiler: Any, **kw: Any) -> str:
    return f"json_each({compiler.process(element.clauses, **kw)})"


@compiles(_JsonArrayElements, "postgresql")
def _pg_json_elements(element: _JsonArrayElements, compiler: Any, **kw: Any) -> str:
    return f"storelink_json_values({compiler.process(element.clauses, **kw)})"


def json_array(name: str, type_: sa.types.TypeEngine[Any] | None = None) -> sa.Select[Any]:
    """A one-column subquery of the values in the list bound to parameter ``name``, sent as one
    JSON document: ``column.in_(json_array("ids"))`` is one statement however many values
    there are, built and compiled once. An IN list, a parameter per value, is expanded anew
    for every batch, which cost SQLAlchemy more than the query cost the database. ``type_``:
    the column's, when not text (PostgreSQL reads text)."""
    value = _JsonArrayElements(sa.bindparam(name, type_=sa.JSON)).table_valued("value").c.value
    return sa.select(value if type_ is None else sa.cast(value, type_))


def insert(
    session: Session,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    *,
    skip_conflicts_on: str | None = None,
    returning: str | None = None,
) -> list[Any]:
    """INSERT ``rows`` (all with the same keys), in their order.

    ``skip_conflicts_on``: a uniquely indexed column; a row whose value is taken already is
    skipped (``ON CONFLICT DO NOTHING``), by whichever transaction took it first. ``returning``:
    the column whose values to return for the rows inserted (in no particular order). On SQLite
    the transaction must hold the write lock (``db.begin_write``): the rows already there are
    looked up first, and nobody else can insert until the commit.
    """
    if not rows:
        return []
    names = list(rows[0])
    columns = ", ".join(names)
    if _is_postgresql(session):
        source, parameters = _recordset(table, names, rows)
        sql = f"INSERT INTO {table.name} ({columns}) SELECT {columns} FROM {source}"  # noqa: S608
        if skip_conflicts_on is not None:
            sql += f" ON CONFLICT ({skip_conflicts_on}) DO NOTHING"
        if returning is not None:
            sql += f" RETURNING {returning}"
        result = session.connection().execute(_statement(sql), parameters)
        return list(result.scalars()) if returning is not None else []
    sql = f"INSERT INTO {table.name} ({columns}) VALUES ({', '.join('?' * len(names))})"  # noqa: S608
    if skip_conflicts_on is not None:
        # The keys as one JSON parameter: an IN list of a parameter per row costs SQLAlchemy
        # more to expand, every batch, than SQLite takes to look them all up.
        key = table.c[skip_conflicts_on]
        keys = json.dumps([row[key.name] for row in rows])
        taken = set(
            session.connection()
            .exec_driver_sql(
                f"SELECT {key.name} FROM {table.name} "  # noqa: S608
                f"WHERE {key.name} IN (SELECT value FROM json_each(?))",
                (keys,),
            )
            .scalars()
        )
        fresh: dict[Any, dict[str, Any]] = {}
        for row in rows:
            if row[key.name] not in taken:
                fresh.setdefault(row[key.name], row)
        rows = list(fresh.values())
        sql += f" ON CONFLICT ({skip_conflicts_on}) DO NOTHING"
    if rows:
        session.connection().exec_driver_sql(sql, _sqlite_rows(table, names, rows))
    return [row[returning] for row in rows] if returning is not None else []


def update_by_id(session: Session, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """UPDATE the rows whose ``id`` each dict names with the dict's other values."""
    if not rows:
        return
    names = list(rows[0])
    assert names[0] == "id", "the first key of an update row is its id"
    if _is_postgresql(session):
        assignments = ", ".join(f"{name} = u.{name}" for name in names[1:])
        source, parameters = _recordset(table, names, rows)
        sql = f"UPDATE {table.name} SET {assignments} FROM {source} WHERE {table.name}.id = u.id"  # noqa: S608
        session.connection().execute(_statement(sql), parameters)
        return
    assignments = ", ".join(f"{name} = ?" for name in names[1:])
    sql = f"UPDATE {table.name} SET {assignments} WHERE id = ?"  # noqa: S608
    values = _sqlite_rows(table, [*names[1:], "id"], rows)
    session.connection().exec_driver_sql(sql, values)


@cache
def _largest_id(table: sa.Table) -> sa.Select[Any]:
    return sa.select(sa.func.max(table.c.id))


def allocate_ids(session: Session, table: sa.Table, count: int) -> list[int]:
    """``count`` new primary keys for ``table``, so its rows can be inserted without RETURNING.

    From the table's sequence on PostgreSQL; on SQLite past the largest id, which is safe
    because the transaction holds SQLite's write lock (``db.begin_write``) until it commits.
    """
    if count <= 0:
        return []
    if _is_postgresql(session):
        sequence = f"{table.name}_id_seq"
        result = session.connection().execute(
            _statement(f"SELECT nextval('{sequence}') FROM generate_series(1, :count)"),  # noqa: S608
            {"count": count},
        )
        return list(result.scalars())
    largest = session.connection().execute(_largest_id(table)).scalar() or 0
    return list(range(largest + 1, largest + 1 + count))
