"""Alembic migrations on a real PostGIS: up, down, up again, and no drift from the models."""

from collections.abc import Callable

import pytest
from alembic import command
from sqlalchemy import inspect, text

from geodata.db import migrate
from geodata.db.engine import create_db_engine
from geodata.db.models import Base
from geodata.errors import SchemaMissing

pytestmark = pytest.mark.integration

EXPECTED_TABLES = {
    "districts",
    "streets",
    "communities",
    "grids",
    "workers",
    "worker_assignments",
    "pois",
    "checkins",
    "incidents",
    "incident_events",
    "consumer_offsets",
    "dataset_imports",
    "patrol_checkins",
    "patrols",
    "patrol_weeks",
    "compliance_changes",
    "compliance_clock",
    "compliance_partitions",
    "incident_status_changes",
    "accounts",
    "account_tokens",
    "attachments",
    "incident_attachments",
    "tracker_devices",
    "account_sessions",
    "sign_in_failures",
    "consumer_heartbeats",
    "open311_clients",
    "open311_requests",
    "open311_contacts",
    "incident_deadlines",
    "notify_deliveries",
    "notify_attempts",
    "calendar_days",
    "coverage_lattices",
    "coverage_days",
    "lockers",
    "locker_dropoffs",
}


def test_upgrade_downgrade_upgrade_round_trip(database_factory: Callable[..., str]) -> None:
    url = database_factory(migrated=False)
    engine = create_db_engine(url)
    try:
        migrate.upgrade(url)
        assert migrate.current_revision(engine) == migrate.head_revision()
        assert set(inspect(engine).get_table_names()) >= EXPECTED_TABLES

        migrate.downgrade(url, "base")
        assert migrate.current_revision(engine) is None
        assert not EXPECTED_TABLES & set(inspect(engine).get_table_names())

        migrate.upgrade(url)
        assert set(inspect(engine).get_table_names()) >= EXPECTED_TABLES
    finally:
        engine.dispose()


def test_the_unused_processed_events_table_is_dropped_and_comes_back_on_downgrade(
    database_factory: Callable[..., str],
) -> None:
    url = database_factory(migrated=False)
    engine = create_db_engine(url)
    try:
        migrate.upgrade(url, "0006")
        assert "processed_events" in inspect(engine).get_table_names()
        migrate.upgrade(url)
        assert "processed_events" not in inspect(engine).get_table_names()
        migrate.downgrade(url, "0006")
        assert "processed_events" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_models_and_migrations_do_not_drift(database_url: str) -> None:
    # `alembic check` fails when autogenerate would emit any operation.
    command.check(migrate.alembic_config(database_url))
    assert set(Base.metadata.tables) == EXPECTED_TABLES


def test_grid_geometry_is_multipolygon_4326_with_a_gist_index(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as conn:
            geometry = conn.execute(
                text(
                    "SELECT type, srid FROM geometry_columns "
                    "WHERE f_table_name = 'grids' AND f_geometry_column = 'geom'"
                )
            ).one()
            index_method = conn.execute(
                text(
                    "SELECT am.amname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "JOIN pg_am am ON am.oid = c.relam WHERE c.relname = 'ix_grids_geom'"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    assert tuple(geometry) == ("MULTIPOLYGON", 4326)
    assert index_method == "gist"


def test_only_one_current_version_per_grid_code(database_url: str) -> None:
    engine = create_db_engine(database_url)
    insert = text(
        "INSERT INTO grids (code, community_code, name, geom, valid_from, valid_to) VALUES "
        "('610302001001001', '610302001001', 'g', "
        "ST_Multi(ST_MakeEnvelope(107.1, 34.3, 107.2, 34.4, 4326)), :vf, NULL)"
    )
    setup = [
        "INSERT INTO districts VALUES ('610302', 'd', NULL, "
        "ST_Multi(ST_MakeEnvelope(107, 34, 108, 35, 4326)))",
        "INSERT INTO streets VALUES ('610302001', '610302', 's', "
        "ST_Multi(ST_MakeEnvelope(107, 34, 108, 35, 4326)))",
        "INSERT INTO communities VALUES ('610302001001', '610302001', 'c', "
        "ST_Multi(ST_MakeEnvelope(107, 34, 108, 35, 4326)))",
    ]
    try:
        with engine.begin() as conn:
            for statement in setup:
                conn.execute(text(statement))
            conn.execute(insert, {"vf": "2020-01-01T00:00:00+08:00"})
        with pytest.raises(Exception, match="ix_grids_current_code"), engine.begin() as conn:
            conn.execute(insert, {"vf": "2021-01-01T00:00:00+08:00"})
    finally:
        engine.dispose()


def test_commands_needing_the_schema_say_to_run_db_upgrade(
    database_factory: Callable[..., str],
) -> None:
    engine = create_db_engine(database_factory(migrated=False))
    try:
        with pytest.raises(SchemaMissing, match="wangge db upgrade"):
            migrate.require_current_schema(engine)
    finally:
        engine.dispose()
