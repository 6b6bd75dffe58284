"""Fixtures of the fault tests: a broker and a PostgreSQL cluster of one test's own."""

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from geodata.db import migrate
from geodata.db.engine import create_db_engine
from tests.integration.fault_support import PrivateBroker, PrivateCluster


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    """A running private Tansu broker (in memory), killed at the end whatever happens."""
    broker = PrivateBroker(tmp_path)
    try:
        broker.start()
        yield broker
    finally:
        broker.close()


@pytest.fixture
def private_cluster(postgis_server: str, reference_gpkg: Path) -> Iterator[PrivateCluster]:
    """A PostgreSQL cluster of this test's own holding the reference city in database
    `wangge`; dropped at the end."""
    from geodata.dataset.importer import import_boundaries

    with psycopg.connect(f"{postgis_server}/postgres") as conn:
        # The shared server's major version: its binaries are the ones installed.
        version = str(conn.info.server_version // 10000)
    cluster = PrivateCluster(version)
    try:
        cluster.create()
        with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE wangge")
        with psycopg.connect(cluster.url("wangge"), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION postgis")
        migrate.upgrade(cluster.url("wangge"))
        engine = create_db_engine(cluster.url("wangge"))
        try:
            import_boundaries(engine, reference_gpkg)
        finally:
            engine.dispose()
        yield cluster
    finally:
        cluster.drop()
