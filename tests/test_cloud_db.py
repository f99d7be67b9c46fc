from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from cloud_api.db import create_tables, make_engine, make_sessionmaker
from cloud_api.models import Cart, Shopper


def shopper(created_at: datetime) -> Shopper:
    return Shopper(
        id="shp_t",
        display_name=None,
        app_key=b"k" * 32,
        consent_personal_offers=True,
        consent_footfall_analytics=True,
        consent_text_version="t1",
        consent_at=created_at,
        created_at=created_at,
    )


def test_timestamps_come_back_as_the_same_instant_in_utc(database_url: str) -> None:
    engine = make_engine(database_url)
    create_tables(engine)
    sessions = make_sessionmaker(engine)
    berlin = datetime(2030, 7, 1, 14, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    with sessions.begin() as session:
        session.add(shopper(berlin))
    with sessions() as session:
        stored = session.scalars(sa.select(Shopper.created_at)).one()
        assert stored == berlin
        assert stored.tzinfo == UTC
        assert stored.hour == 12
        # Comparisons in SQL agree with comparisons in Python, across time zones.
        later = berlin + timedelta(seconds=1)
        assert session.scalar(sa.select(sa.func.count()).where(Shopper.created_at < later)) == 1
    engine.dispose()


def test_a_naive_timestamp_is_refused(database_url: str) -> None:
    engine = make_engine(database_url)
    create_tables(engine)
    with (
        pytest.raises(sa.exc.StatementError, match="naive datetime"),
        make_sessionmaker(engine).begin() as session,
    ):
        session.add(shopper(datetime(2030, 1, 1)))
    engine.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    create_tables(engine)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    sessions = make_sessionmaker(engine)
    cart = Cart(
        cart_id="c1",
        shopper_id="shp_missing",
        items=[],
        total=0,
        currency="EUR",
        status="open",
        updated_at=datetime.now(UTC),
    )
    with pytest.raises(sa.exc.IntegrityError), sessions.begin() as session:
        session.add(cart)
    engine.dispose()


def test_plain_postgresql_urls_use_psycopg() -> None:
    engine = make_engine("postgresql://storelink@db.example/storelink")
    assert engine.url.drivername == "postgresql+psycopg"


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_sqlite_database_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="use a SQLite file"):
        make_engine(url)
