"""The database engine and sessions: SQLite for a single store or the demo, PostgreSQL at scale.

The schema is Alembic's (``cloud_api.store.migrate``): the app upgrades the database when it starts.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
import time
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from cloud_api.store.models import Base

# How long a SQLite writer waits for another one (the API and each consumer) before giving up.
SQLITE_BUSY_TIMEOUT_S = 30.0
# Pages of write-ahead log after which a commit checkpoints the log itself (SQLite's default:
# 1,000, about one ingest batch). The ingest's own checkpointer keeps the log far shorter;
# this is the safety net for when it is not running (see store/checkpoint.py).
SQLITE_WAL_AUTOCHECKPOINT_PAGES = 10_000
# Page cache per connection, in KiB (SQLite's default: 2,000). The ingest touches index pages
# all over the visits' and events' indexes (subject refs are random); with 2 MB they were read
# again from the OS for every batch once the file outgrew it. Allocated only as it fills.
SQLITE_CACHE_KIB = 65_536
# Beside the database file, as SQLite's own -wal and -shm: writers queue on it (begin_write).
SQLITE_WRITE_TURN_SUFFIX = "-write-turn"
_WRITE_TURN = "storelink_sqlite_write_turn"


def normalised_url(database_url: str) -> URL:
    url = make_url(database_url)
    # Plain postgresql:// means psycopg2 to SQLAlchemy, which storelink does not install.
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        # Each connection would get its own empty database: the consumer would write where
        # the API never reads.
        raise ValueError(f"{database_url!r}: use a SQLite file, e.g. sqlite:///./storelink.db")
    return url


def use_wal(dbapi_connection: sqlite3.Connection) -> None:
    """Put the SQLite file in WAL mode, which lets the HTTP API read while a consumer writes.

    The mode stays set in the file. Switching a new file needs it to itself for a moment, and
    SQLite answers "locked" at once rather than waiting: several workers starting together on
    a new file retry until the first one has switched it.
    """
    # synchronous stays FULL: the consumer acknowledges an event to the broker once it is
    # committed, so a commit must survive a power cut too. Batches make the fsyncs few.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    cursor = dbapi_connection.cursor()
    try:
        while True:
            try:
                if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    cursor.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
    finally:
        cursor.close()


def make_engine(database_url: str, *, replayable: bool = False) -> sa.Engine:
    """``replayable``: everything this engine commits can be derived again from what others
    committed durably (the stitcher's visits from the events table), so its commits do not
    wait for the disk: SQLite's ``synchronous=NORMAL`` (in WAL mode a commit survives a crash
    of the process, and only a power loss may take the last ones back, never half of one),
    PostgreSQL's ``synchronous_commit=off`` (the same, for a crash of the server). The
    stitcher spent a fifth of its time waiting for its commits' fsync."""
    url = normalised_url(database_url)
    if url.get_backend_name() != "sqlite":
        if replayable:
            connect_args = {"options": "-c synchronous_commit=off"}
            return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
        return sa.create_engine(url, pool_pre_ping=True)
    # The MQTT consumer threads and the HTTP worker threads each use their own session.
    engine = sa.create_engine(
        url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}
    )

    @sa.event.listens_for(engine, "connect")
    def _configure(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT_PAGES}")
        if replayable:
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
        use_wal(dbapi_connection)

    return engine


def make_sessionmaker(engine: sa.Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def begin_write(session: Session) -> None:
    """Start the session's transaction as a writer, before its first read.

    On SQLite a transaction that reads and then writes fails at once ("database is locked",
    without waiting) when another connection committed in between; taking the write lock up
    front makes it wait its turn instead. PostgreSQL needs nothing: see ``lock_keys``.

    SQLite's own wait is a poll: a writer that finds the file locked sleeps 1, 2, 5, 10 ... up
    to 100 ms between tries, and the writer that has just committed mostly takes the lock again
    before the sleeper wakes. Two ingest workers on one file took turns that way with a p99 of
    0.7-1.2 s at 5,000 events/s. So writers first queue on an exclusive ``flock`` of a file beside
    the database (``SQLITE_WRITE_TURN_SUFFIX``), which the kernel hands to a waiter the moment
    the holder's transaction ends, and which a process that dies lets go of by itself.
    """
    if is_sqlite(session):
        connection = session.connection()
        _wait_for_write_turn(session, connection.engine.url.database)
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _wait_for_write_turn(session: Session, database: str | None) -> None:
    if _WRITE_TURN in session.info:
        return  # this transaction has it already; a second wait would be for itself
    assert database is not None  # normalised_url refuses a SQLite URL without a file
    # Its own open file, not one per process: threads of one process queue like processes.
    turn = os.open(f"{database}{SQLITE_WRITE_TURN_SUFFIX}", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(turn, fcntl.LOCK_EX)
    except BaseException:
        os.close(turn)
        raise
    session.info[_WRITE_TURN] = turn


@sa.event.listens_for(Session, "after_transaction_end")
def _end_write_turn(session: Session, transaction: SessionTransaction) -> None:
    """At the end of the outermost transaction, whether it committed or rolled back."""
    if transaction.parent is None and _WRITE_TURN in session.info:
        turn = session.info.pop(_WRITE_TURN)
        # Unlocked explicitly: a child forked meanwhile shares the open file, and closing only
        # this process's descriptor would leave the turn taken until the child closed it too.
        try:
            fcntl.flock(turn, fcntl.LOCK_UN)
        finally:
            os.close(turn)


# Taken by every ingest batch on PostgreSQL: built once, run on the connection.
_ADVISORY_LOCKS = sa.text(
    "SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS BIGINT[])) AS k"
)


def lock_key(*parts: str) -> int:
    """A signed 64-bit key for PostgreSQL's advisory locks, the same in every process."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_keys(session: Session, keys: Iterable[int]) -> None:
    """Hold PostgreSQL advisory locks on ``keys`` until the transaction ends.

    Two workers whose batches touch the same subject take turns; every worker takes its locks
    in ascending order, so no two wait for each other. On SQLite, a no-op: ``begin_write``
    already serialises writers.
    """
    ordered = sorted(set(keys))
    if not ordered or is_sqlite(session):
        return
    session.connection().execute(_ADVISORY_LOCKS, {"keys": ordered})


def upsert(session: Session, model: type[Base] | sa.Table) -> sqlite.Insert | postgresql.Insert:
    """An INSERT with ON CONFLICT clauses, which both supported databases speak.

    Whether it wrote a row shows in a RETURNING clause, not in ``rowcount``: psycopg reports
    -1 for an INSERT that SQLAlchemy gave an implicit RETURNING.
    """
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)
