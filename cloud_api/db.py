"""The database engine and sessions: SQLite for a single store or the demo, PostgreSQL at scale."""

from __future__ import annotations

import sqlite3

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from cloud_api.models import Base


def _normalised_url(database_url: str) -> URL:
    url = make_url(database_url)
    # Plain postgresql:// means psycopg2 to SQLAlchemy, which storelink does not install.
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url


def make_engine(database_url: str) -> sa.Engine:
    url = _normalised_url(database_url)
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    if url.database in (None, "", ":memory:"):
        # Each connection would get its own empty database: the consumer would write where
        # the API never reads.
        raise ValueError(f"{database_url!r}: use a SQLite file, e.g. sqlite:///./storelink.db")
    # The MQTT consumer thread and the HTTP worker threads each use their own session.
    engine = sa.create_engine(url, connect_args={"check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _configure(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        # WAL lets the HTTP API read while the consumer writes.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    return engine


def make_sessionmaker(engine: sa.Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def create_tables(engine: sa.Engine) -> None:
    """Create missing tables; schema migrations (Alembic) replace this in a later release."""
    Base.metadata.create_all(engine)


def upsert(session: Session, model: type[Base]) -> sqlite.Insert | postgresql.Insert:
    """An INSERT with ON CONFLICT clauses, which both supported databases speak.

    Whether it wrote a row shows in a RETURNING clause, not in ``rowcount``: psycopg reports
    -1 for an INSERT that SQLAlchemy gave an implicit RETURNING.
    """
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)
