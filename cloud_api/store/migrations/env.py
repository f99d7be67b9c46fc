"""Alembic's environment: how a migration reaches the database.

``cloud_api.store.migrate.upgrade_database`` hands over a connection already inside a locked
transaction (``config.attributes["connection"]``); the command line gives a URL instead.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from cloud_api.store.migrate import migration_engine
from cloud_api.store.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite alters a table by rebuilding it; batch mode does that for every ALTER.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("no database: give --database-url or STORELINK_DATABASE_URL")
    engine = migration_engine(url)
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
