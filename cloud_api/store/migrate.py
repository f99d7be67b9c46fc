"""Schema migrations with Alembic, run by the app when it starts (``upgrade_database``).

The migration scripts ship inside the package (``cloud_api/store/migrations``), so an installed
wheel migrates its database with no alembic.ini and no source tree. Every worker of a deployment
runs the upgrade when it starts: on PostgreSQL they take turns on an advisory lock, on SQLite on
the database's write lock, and all but the first find the schema at head and do nothing.

A new revision, once the models changed (against a database at head)::

    python -m cloud_api.store.migrate revision -m "what changed" --database-url sqlite:///./dev.db
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.pool import ConnectionPoolEntry

from cloud_api.store.db import SQLITE_BUSY_TIMEOUT_S, normalised_url, use_wal

logger = logging.getLogger(__name__)

SCRIPT_LOCATION = "cloud_api.store:migrations"
# Any constant shared by every worker; "storelink migrate" in ASCII.
MIGRATION_LOCK_KEY = 0x73746F72656C6D67


class UnversionedDatabaseError(RuntimeError):
    """The database has tables but no Alembic version: made before migrations, or by hand."""


def alembic_config(database_url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if database_url is not None:
        # Alembic's config is an ini file: a literal % must be doubled.
        url = normalised_url(database_url).render_as_string(hide_password=False)
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migration_engine(database_url: str) -> sa.Engine:
    """An engine for migrations: on SQLite, with transactional DDL and the write lock held.

    Python's sqlite3 commits before DDL by default, so a failed migration would leave half a
    schema. Here the driver's own transaction handling is off and each transaction starts with
    BEGIN IMMEDIATE: DDL rolls back as a whole, and two processes migrating take turns. Foreign
    keys stay off, as SQLite's table-rebuilding batch migrations require.
    """
    url = normalised_url(database_url)
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None
        use_wal(dbapi_connection)

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@contextmanager
def _locked(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction that no other migrating process runs at the same time."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        yield connection


def current_revision(connection: sa.Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the package ships no migrations"
    return head


def _refuse_unversioned(connection: sa.Connection) -> None:
    if current_revision(connection) is not None:
        return
    tables = set(sa.inspect(connection).get_table_names())
    if tables:
        raise UnversionedDatabaseError(
            f"{connection.engine.url.render_as_string()} holds tables ({', '.join(sorted(tables))})"
            " but no alembic_version: it was not created by storelink's migrations. Point "
            "STORELINK_DATABASE_URL at a new database, or, if its schema is that of revision "
            f"{head_revision()}, stamp it: "
            "python -m cloud_api.store.migrate stamp --database-url URL"
        )


def upgrade_database(database_url: str, revision: str = "head") -> str | None:
    """Bring the database's schema to ``revision``; returns the revision it is at afterwards."""
    engine = migration_engine(database_url)
    try:
        with _locked(engine) as connection:
            _refuse_unversioned(connection)
            before = current_revision(connection)
            config = alembic_config(database_url)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            after = current_revision(connection)
        if after != before:
            logger.info("database schema upgraded from %s to %s", before or "empty", after)
        return after
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cloud_api.store.migrate", description=__doc__)
    parser.add_argument("action", choices=["upgrade", "current", "stamp", "revision", "sql"])
    parser.add_argument("--database-url", default=None, help="default: the cloud's settings")
    parser.add_argument("-m", "--message", default="", help="revision: what it changes")
    args = parser.parse_args(argv)
    if args.database_url is None:
        from cloud_api.config import CloudSettings

        args.database_url = CloudSettings().database_url
    config = alembic_config(args.database_url)
    if args.action == "upgrade":
        print(upgrade_database(args.database_url))
    elif args.action == "current":
        command.current(config)
    elif args.action == "stamp":
        command.stamp(config, "head")
    elif args.action == "revision":
        command.revision(config, message=args.message, autogenerate=True)
    else:
        # The SQL of every migration, for a DBA to review or run by hand.
        command.upgrade(config, "head", sql=True)


if __name__ == "__main__":
    main()
