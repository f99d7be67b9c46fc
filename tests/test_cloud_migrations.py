"""Alembic migrations on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import fnmatch
import threading
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient
from setuptools import find_packages

import cloud_api
from cloud_api.app import create_app
from cloud_api.config import CloudSettings
from cloud_api.store.db import make_engine
from cloud_api.store.migrate import (
    UnversionedDatabaseError,
    alembic_config,
    current_revision,
    head_revision,
    migration_engine,
    upgrade_database,
)
from cloud_api.store.models import Base, Shopper
from tests.helpers import ADMIN_HEADERS, ADMIN_TOKEN

ROOT = Path(__file__).resolve().parent.parent


def schema_diff(database_url: str) -> list[object]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def snapshot(database_url: str) -> dict[str, object]:
    """Tables, their columns and indexes, the version, and the rows of every table."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            inspector = sa.inspect(connection)
            tables = sorted(inspector.get_table_names())
            return {
                "revision": current_revision(connection),
                "tables": {
                    table: (
                        [column["name"] for column in inspector.get_columns(table)],
                        sorted(index["name"] or "" for index in inspector.get_indexes(table)),
                        connection.scalar(sa.select(sa.func.count()).select_from(sa.table(table))),
                    )
                    for table in tables
                },
            }
    finally:
        engine.dispose()


def test_the_migrated_schema_is_the_models(database_url: str) -> None:
    assert upgrade_database(database_url) == head_revision()
    assert schema_diff(database_url) == []


def test_upgrading_twice_changes_nothing(database_url: str) -> None:
    upgrade_database(database_url)
    engine = make_engine(database_url)
    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(
            sa.insert(Shopper),
            [
                {
                    "id": "shp_keep",
                    "display_name": None,
                    "app_key": b"k" * 32,
                    "consent_personal_offers": True,
                    "consent_footfall_analytics": True,
                    "consent_text_version": "t1",
                    "consent_at": now,
                    "created_at": now,
                }
            ],
        )
    engine.dispose()
    before = snapshot(database_url)

    assert upgrade_database(database_url) == head_revision()

    assert snapshot(database_url) == before
    assert before["revision"] == head_revision()
    tables = before["tables"]
    assert isinstance(tables, dict)
    assert tables["shoppers"][2] == 1
    assert tables["alembic_version"][2] == 1


def index_names(database_url: str) -> set[str]:
    tables = snapshot(database_url)["tables"]
    assert isinstance(tables, dict)
    return {name for table in ("presence_events", "visits") for name in tables[table][1]}


def test_partial_indexes_built_beforehand_are_kept_and_the_old_ones_come_back_on_downgrade(
    database_url: str,
) -> None:
    """Migration 0010 on a large database: a DBA may build its indexes first, without locking
    the table (docs/scaling.md, Known limits); the migration then only drops the old ones."""
    upgrade_database(database_url, "0009")
    engine = make_engine(database_url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        concurrently = " CONCURRENTLY" if connection.dialect.name == "postgresql" else ""
        connection.exec_driver_sql(
            f"CREATE INDEX{concurrently} ix_presence_events_store_exits "
            "ON presence_events (store_id, ts) WHERE kind = 'exit'"
        )
    engine.dispose()

    assert upgrade_database(database_url) == head_revision()
    assert schema_diff(database_url) == []
    new = {
        "ix_presence_events_store_exits",
        "ix_presence_events_checkins",
        "ix_presence_events_tracked_shopper",
        "ix_visits_tracked_shopper",
    }
    old = {"ix_presence_events_store_ts", "ix_presence_events_shopper_id", "ix_visits_shopper"}
    assert new <= index_names(database_url)
    assert not old & index_names(database_url)

    engine = migration_engine(database_url)
    try:
        with engine.begin() as connection:
            config = alembic_config(database_url)
            config.attributes["connection"] = connection
            command.downgrade(config, "0009")
    finally:
        engine.dispose()
    assert old <= index_names(database_url)
    assert not new & index_names(database_url)


def test_workers_starting_together_migrate_once(database_url: str) -> None:
    """Every worker upgrades at start; on a fresh database they must take turns, not collide."""
    results: list[str | None] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def worker() -> None:
        try:
            start.wait(5)
            results.append(upgrade_database(database_url))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert results == [head_revision()] * 4
    assert schema_diff(database_url) == []


def test_a_database_made_without_migrations_is_refused(database_url: str) -> None:
    engine = make_engine(database_url)
    Base.metadata.create_all(engine)
    engine.dispose()
    with pytest.raises(UnversionedDatabaseError, match="no alembic_version"):
        upgrade_database(database_url)


def test_the_app_migrates_its_database_when_it_starts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    app = create_app(CloudSettings(database_url=url, mqtt_enabled=False, admin_token=ADMIN_TOKEN))
    with TestClient(app, headers=ADMIN_HEADERS) as client:
        assert client.get("/healthz").json()["database"] == "ok"
        assert client.get("/v1/stats/summary").json()["presence_events"] == 0
    assert snapshot(url)["revision"] == head_revision()
    engine = make_engine(url)
    with engine.connect() as connection:
        # The embedded default: SQLite in WAL mode, so the API reads while the ingest writes.
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


def test_a_failed_sqlite_migration_leaves_no_half_schema(tmp_path: Path) -> None:
    """SQLite migrations run in one transaction: DDL rolls back with the rest."""
    url = f"sqlite:///{tmp_path / 'rollback.db'}"
    engine = migration_engine(url)
    with pytest.raises(sa.exc.OperationalError), engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE half (id INTEGER PRIMARY KEY)")
        connection.exec_driver_sql("CREATE TABLE broken (")
    with engine.connect() as connection:
        assert sa.inspect(connection).get_table_names() == []
    engine.dispose()


def test_the_wheel_ships_the_migrations() -> None:
    """The app migrates from the installed package: every migration file must be in the wheel."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = set(find_packages(str(ROOT), include=config["packages"]["find"]["include"]))
    package_data: dict[str, list[str]] = config["package-data"]
    migrations = Path(cloud_api.__file__).parent / "store" / "migrations"
    files = [p for p in migrations.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert any(path.name == "env.py" for path in files)
    assert any(path.parent.name == "versions" and path.name.startswith("0001") for path in files)
    for path in files:
        package = ".".join(path.parent.relative_to(ROOT).parts)
        assert package in packages, f"{package} is not a package: add an __init__.py"
        if path.suffix == ".py":
            continue
        patterns = package_data.get(package, []) + package_data.get("*", [])
        assert any(fnmatch.fnmatch(path.name, p) for p in patterns), (
            f"{path} is not package data: add it to [tool.setuptools.package-data]"
        )
