from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cloud_api.ingest import bulk
from cloud_api.store.checkpoint import WalCheckpointer
from cloud_api.store.db import (
    SQLITE_WRITE_TURN_SUFFIX,
    begin_write,
    make_engine,
    make_sessionmaker,
)
from cloud_api.store.migrate import upgrade_database
from cloud_api.store.models import Base, Cart, Shopper, Visit


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
    upgrade_database(database_url)
    engine = make_engine(database_url)
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
    upgrade_database(database_url)
    engine = make_engine(database_url)
    with (
        pytest.raises(sa.exc.StatementError, match="naive datetime"),
        make_sessionmaker(engine).begin() as session,
    ):
        session.add(shopper(datetime(2030, 1, 1)))
    engine.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    upgrade_database(url)
    engine = make_engine(url)
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


def write_turn_is_taken(database: Path) -> bool:
    """Whether a SQLite writer holds its turn (``begin_write``), asked without waiting."""
    turn = os.open(f"{database}{SQLITE_WRITE_TURN_SUFFIX}", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(turn, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(turn)
    return False


def test_sqlite_writers_queue_for_their_turn_until_the_transaction_ends(tmp_path: Path) -> None:
    database = tmp_path / "turns.db"
    engine = make_engine(f"sqlite:///{database}")
    sessions = make_sessionmaker(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE writes (writer TEXT)")
    insert = sa.text("INSERT INTO writes (writer) VALUES (:writer)")
    second_done = threading.Event()

    def second_writer() -> None:
        with sessions.begin() as session:
            begin_write(session)
            session.execute(insert, {"writer": "second"})
        second_done.set()

    with sessions.begin() as session:
        begin_write(session)
        session.execute(insert, {"writer": "first"})
        assert write_turn_is_taken(database)
        waiting = threading.Thread(target=second_writer)
        waiting.start()
        # The second writer waits for the turn, not on SQLite's lock (which it would poll).
        assert not second_done.wait(0.3)
    waiting.join(5)
    assert second_done.is_set()
    assert not write_turn_is_taken(database)
    with engine.connect() as connection:
        writers = connection.exec_driver_sql("SELECT writer FROM writes ORDER BY rowid")
        assert [row[0] for row in writers] == ["first", "second"]

    # A transaction that rolls back, or a session closed mid-transaction, gives the turn back.
    with pytest.raises(RuntimeError, match="bug"), sessions.begin() as session:
        begin_write(session)
        session.execute(insert, {"writer": "rolled back"})
        raise RuntimeError("bug")
    assert not write_turn_is_taken(database)
    session = sessions()
    begin_write(session)
    session.execute(insert, {"writer": "closed"})
    assert write_turn_is_taken(database)
    session.close()
    assert not write_turn_is_taken(database)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM writes").scalar() == 2

    # A child forked mid-transaction shares the open lock file; the turn ends with the
    # transaction all the same, not when the child exits.
    with sessions.begin() as session:
        begin_write(session)
        child = os.fork()
        if child == 0:
            time.sleep(3)
            os._exit(0)
    try:
        assert not write_turn_is_taken(database)
    finally:
        os.kill(child, 9)
        os.waitpid(child, 0)

    # Asking twice in one transaction is a bug that fails at once, not a wait for itself.
    session = sessions()
    begin_write(session)
    refused: list[str] = []

    def again() -> None:
        with pytest.raises(sa.exc.OperationalError, match="within a transaction") as error:
            begin_write(session)
        refused.append(str(error.value))

    asking = threading.Thread(target=again, daemon=True)
    asking.start()
    asking.join(5)
    assert len(refused) == 1
    session.close()
    assert not write_turn_is_taken(database)
    engine.dispose()


def test_the_checkpointer_copies_the_log_into_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.connect() as connection:
        # A commit checkpoints by itself only far past SQLite's default of 1,000 pages.
        assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 10_000
    writer = sqlite3.connect(path)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE t (x TEXT)")
    writer.commit()
    empty = path.stat().st_size
    writer.executemany("INSERT INTO t VALUES (?)", [("x" * 100,) for _ in range(20_000)])
    writer.commit()
    assert path.stat().st_size == empty, "the rows are in the log, not yet in the file"
    checkpointer = WalCheckpointer.for_engine(engine)
    assert checkpointer is not None
    checkpointer = WalCheckpointer(str(path), interval_s=0.05)
    checkpointer.start()
    try:
        deadline = time.monotonic() + 10
        while path.stat().st_size < 2_000_000 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        checkpointer.stop()
    assert path.stat().st_size >= 2_000_000, "the checkpointer copied the log into the file"
    writer.close()
    engine.dispose()
    reader = sqlite3.connect(path)
    assert reader.execute("SELECT count(*) FROM t").fetchone() == (20_000,)
    reader.close()
    assert WalCheckpointer.for_engine(make_engine("postgresql://x@db.example/x")) is None


def test_plain_postgresql_urls_use_psycopg() -> None:
    engine = make_engine("postgresql://storelink@db.example/storelink")
    assert engine.url.drivername == "postgresql+psycopg"


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_sqlite_database_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="use a SQLite file"):
        make_engine(url)


def test_bulk_writes_store_exactly_what_the_orm_stores(database_url: str) -> None:
    """The ingest's bulk statements bypass SQLAlchemy's types: the stored values must not differ."""
    upgrade_database(database_url)
    engine = make_engine(database_url)
    visits = Base.metadata.tables["visits"]
    events = Base.metadata.tables["presence_events"]
    berlin = timezone(timedelta(hours=2))
    values: dict[str, Any] = {
        "store_id": "store-1",
        "subject_type": "anonymous",
        "subject_ref": "anon-1",
        "shopper_id": None,
        "started_at": datetime(2030, 7, 1, 14, 30, 15, 123456, tzinfo=berlin),
        "last_seen_at": datetime(2030, 7, 1, 12, 31, 0, tzinfo=UTC),
        "ended_at": None,
        "zones": ["entrance", "shoes"],
        "presence": {"entrance/anon-1": [1909226000.25, 1]},
        "dwell_s": 44.9,
    }
    later = {"ended_at": datetime(2030, 7, 1, 12, 40, tzinfo=UTC), "zones": ["entrance"]}
    sessions = make_sessionmaker(engine)
    with sessions.begin() as session:
        session.add(Visit(id=1, **values))
    with sessions.begin() as session:
        begin_write(session)
        bulk.insert(session, visits, [{"id": 2, **values}])
    with sessions.begin() as session:
        session.get_one(Visit, 1).ended_at = later["ended_at"]
        session.get_one(Visit, 1).zones = later["zones"]
    with sessions.begin() as session:
        begin_write(session)
        bulk.update_by_id(session, visits, [{"id": 2, **later}])

    with engine.connect() as connection:
        columns = ", ".join(name for name in values)
        raw = connection.exec_driver_sql(f"SELECT {columns} FROM visits ORDER BY id").all()
    assert raw[0] == raw[1]
    with sessions() as session:
        orm, bulk_written = session.scalars(sa.select(Visit).order_by(Visit.id)).all()
        for name in values:
            assert getattr(orm, name) == getattr(bulk_written, name), name
        assert bulk_written.started_at == values["started_at"]
        assert bulk_written.ended_at == later["ended_at"]

    def event(event_id: str) -> dict[str, Any]:
        now = datetime.now(UTC)
        return {
            "event_id": event_id,
            "store_id": "store-1",
            "gateway_id": "gw-1",
            "zone_id": "entrance",
            "kind": "enter",
            "subject_type": "anonymous",
            "subject_ref": "anon-1",
            "shopper_id": None,
            "ts": now,
            "dwell_s": 0.0,
            "rssi": -60.0,
            "distance_m": None,
            "received_at": now,
        }

    with sessions.begin() as session:
        begin_write(session)
        first = bulk.insert(
            session,
            events,
            [event("A"), event("B")],
            skip_conflicts_on="event_id",
            returning="event_id",
        )
    with sessions.begin() as session:
        begin_write(session)
        second = bulk.insert(
            session,
            events,
            [event("B"), event("C")],
            skip_conflicts_on="event_id",
            returning="event_id",
        )
    assert (sorted(first), second) == (["A", "B"], ["C"])
    engine.dispose()


def test_json_array_matches_exactly_the_listed_values(database_url: str) -> None:
    """The lookups' IN list as one JSON parameter finds the listed rows, by text and by integer
    key, and none for an empty list; and a table of a few thousand rows is searched by index,
    not scanned (PostgreSQL estimated the list at 100 rows and scanned up to about 20,000)."""
    upgrade_database(database_url)
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    visits = Visit.__table__
    now = datetime.now(UTC)
    refs = ['o\'brien "x"', *(f"anon-{n}" for n in range(1, 3000))]
    with sessions.begin() as session:
        session.execute(
            sa.insert(visits),
            [
                {
                    "id": n,
                    "store_id": "store-1",
                    "subject_type": "anonymous",
                    "subject_ref": ref,
                    "started_at": now,
                    "last_seen_at": now,
                    "zones": [],
                    "presence": {},
                    "dwell_s": 0.0,
                }
                for n, ref in enumerate(refs)
            ],
        )
    with engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE")
    by_ref = sa.select(visits.c.id).where(visits.c.subject_ref.in_(bulk.json_array("keys")))
    by_id = sa.select(visits.c.subject_ref).where(
        visits.c.id.in_(bulk.json_array("ids", sa.BigInteger()))
    )
    keys = json.dumps([f"anon-{n}" for n in range(100, 120)])
    with sessions() as session:
        connection = session.connection()

        def ids(keys: list[str]) -> list[int]:
            return sorted(connection.execute(by_ref, {"keys": keys}).scalars())

        assert ids(['o\'brien "x"', "anon-4", "nobody"]) == [0, 4]
        assert ids([]) == []
        found = connection.execute(by_id, {"ids": [0, 12, 99_999]}).scalars()
        assert sorted(found) == ["anon-12", 'o\'brien "x"']
        if engine.dialect.name == "sqlite":
            sql = str(by_ref.compile(engine))
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", (keys,)).all()
            assert any(step[3].startswith("SEARCH visits USING") for step in plan), plan
        else:
            sql = str(by_ref.compile(engine)).replace("%(keys)s", f"'{keys}'")
            plan = "\n".join(connection.exec_driver_sql(f"EXPLAIN {sql}").scalars())
            assert "Index" in plan and "Seq Scan on visits" not in plan, plan
    engine.dispose()
