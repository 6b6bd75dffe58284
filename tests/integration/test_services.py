"""`wangge services`: real PostgreSQL and a real Tansu broker, started and checked."""

import socket
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from kafka.admin import KafkaAdminClient

from geodata.contract import ALL_TOPICS
from wangge import services
from wangge.pg_tuning import AUTOVACUUM_ADVICE
from wangge.settings import DatabaseSettings, KafkaSettings, LocalServicesSettings

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _quiet(_message: str) -> None:
    pass


def test_local_broker_starts_once_and_second_start_changes_nothing(tmp_path: Path) -> None:
    kafka = KafkaSettings(local_broker_port=_free_port(), topic_partitions=3)
    local = LocalServicesSettings(state_dir=tmp_path)
    first = services.ensure_broker(kafka, local, log=_quiet)
    try:
        assert first.state == "started"
        pid = int((tmp_path / "tansu.pid").read_text())

        second = services.ensure_broker(kafka, local, log=_quiet)
        assert second.state == "already running"
        assert not any("created" in line for line in second.details)
        assert int((tmp_path / "tansu.pid").read_text()) == pid

        admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap, client_id="test")
        try:
            described = admin.describe_topics(list(ALL_TOPICS))
        finally:
            admin.close()
        assert {t["name"]: len(t["partitions"]) for t in described} == dict.fromkeys(ALL_TOPICS, 3)
        status = services.broker_status(kafka, local)
        assert status.state == "running"
        assert f"local Tansu pid {pid}" in status.details
    finally:
        stopped = services.stop_broker(local, log=_quiet)
    assert stopped.state == "stopped"
    assert services.broker_status(kafka, local).state == "not running"


def test_configured_broker_that_does_not_answer_fails_with_advice(tmp_path: Path) -> None:
    kafka = KafkaSettings(kafka_bootstrap=f"127.0.0.1:{_free_port()}")
    with pytest.raises(services.ServiceError, match="WANGGE_KAFKA_BOOTSTRAP"):
        services.ensure_broker(kafka, LocalServicesSettings(state_dir=tmp_path), log=_quiet)
    assert not (tmp_path / "tansu.pid").exists()


def test_postgis_database_is_created_once_then_left_alone(postgis_server: str) -> None:
    name = "wangge_test_services"
    url = f"{postgis_server}/{name}"
    admin = f"{postgis_server}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    try:
        first = services.ensure_postgis(DatabaseSettings(database_url=url), log=_quiet)
        assert f"created database {name}" in first.details
        assert "created extension postgis" in first.details

        second = services.ensure_postgis(DatabaseSettings(database_url=url), log=_quiet)
        assert not any(line.startswith("created") for line in second.details)
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT postgis_lib_version()").fetchone()
        assert row is not None
        assert row[0].startswith("3.")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_configured_database_server_that_is_down_fails_with_advice() -> None:
    settings = DatabaseSettings(database_url=f"postgresql://postgres@127.0.0.1:{_free_port()}/x")
    with pytest.raises(services.ServiceError, match="WANGGE_DATABASE_URL"):
        services.ensure_postgis(settings, log=_quiet)


def test_status_reports_a_missing_database_as_not_running(
    database_factory: Callable[..., str],
) -> None:
    url = database_factory(migrated=False).rsplit("/", 1)[0] + "/wangge_test_never_created"
    report = services.postgis_status(DatabaseSettings(database_url=url))
    assert report.state == "not running"
    assert "does not exist" in report.details[0]


def test_status_says_whether_autovacuum_runs_and_advises_when_it_does_not(
    database_url: str,
) -> None:
    report = services.postgis_status(DatabaseSettings(database_url=database_url))
    with psycopg.connect(database_url) as conn:
        running = conn.execute("SHOW autovacuum").fetchone() == ("on",)
    assert report.state == "running"
    assert ("autovacuum on" if running else f"advice: {AUTOVACUUM_ADVICE}") in report.details
