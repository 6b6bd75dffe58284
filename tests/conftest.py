"""Shared fixtures: real PostGIS databases made per test module, never shared state."""

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from sqlalchemy import Engine

from geodata.db import migrate
from geodata.db.engine import create_db_engine
from wangge.settings import DatabaseSettings

ADMIN_DB = "postgres"


def _admin_url() -> str:
    base = DatabaseSettings().url.rsplit("/", 1)[0]
    return f"{base}/{ADMIN_DB}"


@pytest.fixture(scope="session")
def postgis_server() -> str:
    """Make sure the local PostGIS runs (installing it if needed) and return its base URL."""
    from wangge import services

    services.ensure_postgis(DatabaseSettings(), log=lambda _msg: None)
    return DatabaseSettings().url.rsplit("/", 1)[0]


@pytest.fixture(scope="session")
def database_factory(postgis_server: str) -> Iterator[Callable[..., str]]:
    """Factory: a fresh, uniquely named database with PostGIS; migrated unless asked not to."""
    created: list[str] = []

    def make(*, migrated: bool = True) -> str:
        name = f"wangge_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(_admin_url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        url = f"{postgis_server}/{name}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        if migrated:
            migrate.upgrade(url)
        return url

    yield make
    with psycopg.connect(_admin_url(), autocommit=True) as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(database_factory: Callable[..., str]) -> str:
    """A fresh migrated database for one test."""
    return database_factory()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on a fresh migrated database."""
    eng = create_db_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """Make sure a broker runs (the local Tansu unless one is configured) with the topics."""
    from wangge import services
    from wangge.settings import KafkaSettings, LocalServicesSettings

    settings = KafkaSettings()
    services.ensure_broker(settings, LocalServicesSettings(), log=lambda _msg: None)
    return settings.bootstrap
