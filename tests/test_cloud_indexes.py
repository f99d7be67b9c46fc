"""The partial indexes (migration 0010) serve the queries that read by them, on both databases.

Each query runs through the project's own code against a migrated database holding a store's
worth of events and visits, mostly anonymous, with statistics gathered; the statement the
driver received is captured and explained there, on PostgreSQL as a generic plan (what a
worker's prepared statement comes to). A partial index the planner cannot prove covers the
query leaves it another index that reads far more rows, or a full scan.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from psycopg.types.json import Json
from sqlalchemy.orm import Session

from cloud_api.ingest.checkins import exit_presence
from cloud_api.ingest.presence_service import _LATEST_BY_SHOPPER
from cloud_api.match.campaign_store import _visit_starts
from cloud_api.routes.footfall import zone_stays
from cloud_api.shoppers.loyalty_store import load_facts
from cloud_api.store.db import make_engine, make_sessionmaker
from cloud_api.store.migrate import upgrade_database
from cloud_api.store.models import PresenceEventRow, Shopper, Visit

AT = datetime(2030, 1, 1, 12, tzinfo=UTC)


SHOPPERS = ("shp_a", "shp_b")


def _shopper(shopper_id: str) -> dict[str, Any]:
    return {
        "id": shopper_id,
        "display_name": None,
        "app_key": b"k" * 32,
        "consent_personal_offers": True,
        "consent_footfall_analytics": True,
        "consent_text_version": "t1",
        "consent_at": AT,
        "created_at": AT,
    }


def _visit(n: int) -> dict[str, Any]:
    started = AT - timedelta(minutes=n % 600)
    return {
        "store_id": f"store-{n % 10}",
        "subject_type": "phone",
        "subject_ref": f"ref-{n}",
        # One visit in fifty is a tracked shopper's.
        "shopper_id": SHOPPERS[n % 2] if n % 50 == 0 else None,
        "started_at": started,
        "last_seen_at": started + timedelta(minutes=5),
        "ended_at": started + timedelta(minutes=5),
        "zones": ["entrance"],
        "presence": {},
        "dwell_s": 300.0,
    }


def _event(n: int) -> dict[str, Any]:
    return {
        "event_id": f"{n:026d}",
        "store_id": f"store-{n % 10}",
        "gateway_id": "gw-1",
        "zone_id": "entrance",
        "kind": ("enter", "dwell", "dwell", "dwell", "exit")[n % 5],
        "subject_type": "phone",
        "subject_ref": f"ref-{n // 5}",
        "shopper_id": None,
        "ts": AT - timedelta(seconds=n),
        "dwell_s": 10.0,
        "rssi": -60.0,
        "distance_m": None,
        "received_at": AT,
        # One event in a hundred is an app check-in.
        "source": "app" if n % 100 == 0 else "gateway",
    }


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    upgrade_database(database_url)
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(sa.insert(Shopper), [_shopper(s) for s in SHOPPERS])
        connection.execute(sa.insert(Visit), [_visit(n) for n in range(5000)])
        connection.execute(sa.insert(PresenceEventRow), [_event(n) for n in range(10000)])
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("ANALYZE")
    yield engine
    engine.dispose()


def _text_literal(value: Any) -> str:
    text = json.dumps(value.obj) if isinstance(value, Json) else str(value)
    return "'" + text.replace("'", "''") + "'"


def plan_of(engine: sa.Engine, table: str, run: Callable[[Session], object]) -> str:
    """How the database runs the statement ``run`` sends that reads ``table``."""
    sent: list[tuple[str, Any]] = []

    def capture(_c: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        with make_sessionmaker(engine)() as session:
            run(session)
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    reads = [(s, p) for s, p in sent if f"FROM {table}" in s and s.lstrip().startswith("SELECT")]
    assert len(reads) == 1, f"expected one read of {table}, got {reads}"
    statement, parameters = reads[0]
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            return "\n".join(str(row[-1]) for row in rows)
        # As a worker's prepared statement is planned once it has run a few times: for any
        # values, not for these (EXPLAIN of the statement itself would plan for these).
        names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", statement)))
        numbered = re.sub(r"%\((\w+)\)s", lambda match: f"${names.index(match[1]) + 1}", statement)
        connection.exec_driver_sql(f"PREPARE storelink_plan AS {numbered}")
        connection.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
        # As text literals, which PostgreSQL reads as the prepared parameters' types.
        arguments = ", ".join(_text_literal(parameters[name]) for name in names)
        rows = connection.exec_driver_sql(f"EXPLAIN EXECUTE storelink_plan({arguments})")
        plan = "\n".join(str(row[0]) for row in rows)
        connection.exec_driver_sql("DEALLOCATE storelink_plan")
        return plan


def test_the_zone_heatmap_reads_the_exits_index(engine: sa.Engine) -> None:
    plan = plan_of(
        engine,
        "presence_events",
        lambda session: zone_stays(session, "store-1", AT - timedelta(days=7), AT),
    )
    assert "ix_presence_events_store_exits" in plan


def test_an_app_exit_finds_its_enter_by_the_checkins_index(engine: sa.Engine) -> None:
    plan = plan_of(
        engine,
        "presence_events",
        lambda session: exit_presence(session, ("store-1", "store"), b"k" * 32, AT),
    )
    assert "ix_presence_events_checkins" in plan


@pytest.mark.parametrize(
    "lookup",
    [
        pytest.param(
            lambda session: session.connection().execute(
                _LATEST_BY_SHOPPER, {"keys": ["shp_a", "shp_b"], "since": AT}
            ),
            id="ingest-latest-visits",
        ),
        pytest.param(
            lambda session: _visit_starts(session, ["shp_a", "shp_b"], AT), id="campaign-visits"
        ),
        pytest.param(lambda session: load_facts(session, ["shp_a", "shp_b"]), id="loyalty"),
    ],
)
def test_visits_by_shopper_read_the_tracked_shoppers_index(
    engine: sa.Engine, lookup: Callable[[Session], object]
) -> None:
    assert "ix_visits_tracked_shopper" in plan_of(engine, "visits", lookup)
