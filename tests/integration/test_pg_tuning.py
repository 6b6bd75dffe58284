"""`wangge services start` tunes a PostgreSQL it runs and only advises on one it does not.

A cluster of the test's own stands for the local one: the shared server keeps running
under the other tests.
"""

from collections.abc import Iterator

import psycopg
import pytest

from tests.integration.fault_support import PrivateCluster
from wangge import services
from wangge.pg_tuning import AUTOVACUUM_ADVICE, GB, Resources, recommended

pytestmark = pytest.mark.integration

SMALL_MACHINE = Resources(memory_kb=2 * GB)


@pytest.fixture
def cluster(postgis_server: str) -> Iterator[PrivateCluster]:
    with psycopg.connect(f"{postgis_server}/postgres") as conn:
        version = str(conn.info.server_version // 10000)
    cluster = PrivateCluster(version)
    try:
        cluster.create()
        yield cluster
    finally:
        cluster.drop()


def _shown(url: str) -> dict[str, str]:
    names = [s.name for s in recommended(SMALL_MACHINE)]
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)", (names,)
        ).fetchall()
    return dict(rows)


def test_a_local_cluster_is_set_restarted_once_and_left_alone_after(
    cluster: PrivateCluster,
) -> None:
    url = cluster.url("postgres")
    restarts: list[str] = []

    def restart() -> None:
        restarts.append("restart")
        cluster.stop()
        cluster.start()

    before = _shown(url)
    assert before["shared_buffers"] == "128MB", "a fresh cluster starts with the default"

    first = services.tune_postgres(url, restart, log=lambda _m: None, resources=SMALL_MACHINE)

    assert first[0].startswith("set "), first
    assert restarts == ["restart"], "shared_buffers only takes effect after a restart"
    assert _shown(url) == {s.name: s.shown() for s in recommended(SMALL_MACHINE)}
    states = services.setting_states(url, SMALL_MACHINE)
    assert all(s.matches and not s.pending_restart for s in states)

    again = services.tune_postgres(url, restart, log=lambda _m: None, resources=SMALL_MACHINE)

    assert again == ["settings as recommended for this machine"]
    assert restarts == ["restart"]


def test_a_configured_database_is_only_advised(cluster: PrivateCluster) -> None:
    url = cluster.url("postgres")
    before = _shown(url)

    advice = services.tune_postgres(url, None, log=lambda _m: None, resources=SMALL_MACHINE)

    assert _shown(url) == before
    assert "advice: shared_buffers 128MB, recommended 256MB" in advice
    with psycopg.connect(url) as conn:
        written = conn.execute(
            "SELECT count(*) FROM pg_file_settings WHERE sourcefile LIKE '%auto.conf'"
        ).fetchone()
    assert written == (0,), "nothing written by ALTER SYSTEM"


def test_autovacuum_off_is_advised_against_and_left_as_it_is(cluster: PrivateCluster) -> None:
    url = cluster.url("postgres")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET autovacuum = off")
        conn.execute("SELECT pg_reload_conf()")

    def restart() -> None:
        cluster.stop()
        cluster.start()

    set_first = services.tune_postgres(url, restart, log=lambda _m: None, resources=SMALL_MACHINE)
    assert set_first[-1] == f"advice: {AUTOVACUUM_ADVICE}", set_first

    # Even on a cluster it may set: off is someone's choice, not a default that misfits.
    again = services.tune_postgres(url, None, log=lambda _m: None, resources=SMALL_MACHINE)

    assert again == ["settings as recommended for this machine", f"advice: {AUTOVACUUM_ADVICE}"]
    assert not services.autovacuum_on(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET autovacuum = on")
        conn.execute("SELECT pg_reload_conf()")
    assert services.tune_postgres(url, None, log=lambda _m: None, resources=SMALL_MACHINE) == [
        "settings as recommended for this machine"
    ]
