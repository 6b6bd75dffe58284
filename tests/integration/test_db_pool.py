"""The API's one connection pool: its connections are kept under load, and a connection the
server ended is replaced by the next statement that finds it dead (docs/ARCHITECTURE.md,
"Connections").

The app runs on real uvicorn with real threads; the sessions are PostgreSQL's own count
(`pg_stat_database.sessions`, every session ever opened on the database).
"""

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest
from anyio import to_thread
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from geodata.contract import Topics
from geodata.db.engine import PoolPolicy, create_db_engine, unit_of_work
from grid_service.app import ApiConfig, create_app
from tests.integration.live_support import api_server, namespaced, serving
from wangge.users_cli import add_user

pytestmark = pytest.mark.integration

CLIENTS = 16
LOAD_S = 3.0
POOL = PoolPolicy(size=6)
"""The pool of the apps this test makes itself."""


@pytest.fixture(scope="module")
def city_url(reference_database_factory: Callable[[], str]) -> str:
    """A copy of the reference city for this module."""
    return reference_database_factory()


def _sessions(admin: psycopg.Connection) -> int:
    admin.execute("SELECT pg_stat_clear_snapshot()")
    row = admin.execute(
        "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
    ).fetchone()
    assert row is not None
    return int(row[0])


def _end_other_sessions(admin: psycopg.Connection) -> int:
    """End every other session on the database, waiting until each is gone; how many."""
    pids = admin.execute(
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    ).fetchall()
    for (pid,) in pids:
        ended = admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)).fetchone()
        assert ended == (True,), pid
    return len(pids)


@pytest.fixture
def admin(city_url: str) -> Iterator[psycopg.Connection]:
    """The test's own connection to the city's database (autocommit)."""
    with psycopg.connect(city_url, autocommit=True) as conn:
        yield conn


def _reads(city_url: str) -> list[str]:
    with psycopg.connect(city_url) as conn:
        grids = conn.execute(
            "SELECT code, ST_X(p), ST_Y(p) FROM (SELECT code, ST_PointOnSurface(geom) AS p"
            " FROM grids WHERE valid_to IS NULL AND length(code) = 15 ORDER BY code LIMIT 40) s"
        ).fetchall()
    reads = []
    for n, (code, lon, lat) in enumerate(grids):
        reads += [
            f"/api/v1/grids/{code}",
            f"/api/v1/grids/locate?lon={lon}&lat={lat}",
            f"/ogc/collections/grids/items/{code}",
            f"/tiles/grids/14/{13063 + n % 4}/{6527 + n % 3}.pbf",
        ]
    return [*reads, "/ogc/collections/grids/items?limit=100"]


def test_sixteen_clients_reading_open_no_session_beyond_the_pool(
    city_url: str,
    admin: psycopg.Connection,
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
) -> None:
    worker = add_user(city_url, "pool-worker", "worker", None, "W00042")
    reads = [*_reads(city_url), "/api/v1/workers/W00042/patrols?week=2020-W37"]
    before = _sessions(admin)
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    # Its own process, as `wangge serve` runs (a server among the clients' threads in this
    # one would share their interpreter lock, and hardly ever serve 16 requests at once).
    with api_server(city_url, kafka_bootstrap, namespaced(topic_factory(partitions=1))) as api:
        stop = time.monotonic() + LOAD_S

        def client(offset: int) -> None:
            headers = {"Authorization": f"Bearer {worker}"}
            with httpx.Client(base_url=api.base, timeout=30, headers=headers) as http:
                for path in itertools.islice(itertools.cycle(reads), offset, None):
                    if time.monotonic() > stop:
                        return
                    status = http.get(path).status_code
                    with lock:
                        statuses[status] += 1

        threads = [threading.Thread(target=client, args=(n * 7,)) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        opened = _sessions(admin) - before
    assert set(statuses) == {200}, statuses
    assert statuses.total() > 10 * CLIENTS  # the load was real
    # Every session the app opened, its health probe and grid snapshot included.
    assert 0 < opened <= PoolPolicy().size


def test_a_connection_ended_between_requests_is_replaced_and_the_next_read_answers(
    city_url: str,
    admin: psycopg.Connection,
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
) -> None:
    # Each from the database (locate, a tile served before and a grid by id from OGC answer
    # from memory).
    from_memory = ("locate", "/tiles/", "/ogc/collections/grids/items/")
    reads = [r for r in _reads(city_url)[:8] if not any(m in r for m in from_memory)]
    reads += _reads(city_url)[-1:]
    config = ApiConfig(city_url, kafka_bootstrap, topic_factory(partitions=1), db_pool=POOL)
    with serving(config) as base, httpx.Client(base_url=base, timeout=30) as http:
        for path in reads:
            assert http.get(path).status_code == 200, path
        for path in reads:
            # Every connection of the pool, idle between requests, ended by the server.
            assert _end_other_sessions(admin) >= 1
            response = http.get(path)
            assert response.status_code == 200, (path, response.text)


def test_routes_run_in_as_many_threads_as_the_pool_leaves_them(
    city_url: str, kafka_bootstrap: str, topic_factory: Callable[..., Topics]
) -> None:
    config = ApiConfig(city_url, kafka_bootstrap, topic_factory(partitions=1), db_pool=POOL)
    with TestClient(create_app(config)) as client:
        assert client.portal is not None
        threads = client.portal.call(_route_threads)
    # The pool less the health probe's, the grid snapshot check's, the tile stamps' and
    # the compliance memory's.
    assert threads == POOL.size - 4


async def _route_threads() -> float:
    return to_thread.current_default_thread_limiter().total_tokens


@pytest.fixture
def pool_engine(city_url: str) -> Iterator[Engine]:
    """An engine with the API's kind of pool, of one connection."""
    engine = create_db_engine(city_url, PoolPolicy(size=1))
    yield engine
    engine.dispose()


def test_a_write_whose_connection_died_before_it_is_sent_once_and_committed(
    pool_engine: Engine, admin: psycopg.Connection
) -> None:
    admin.execute("CREATE TABLE pool_retry_writes (n int)")
    try:
        with pool_engine.connect() as conn:
            conn.execute(text("SELECT 1"))  # the pool's connection, then back in the pool
        _end_other_sessions(admin)
        with unit_of_work(pool_engine) as session:
            session.execute(text("INSERT INTO pool_retry_writes VALUES (1)"))
            session.execute(text("INSERT INTO pool_retry_writes VALUES (2)"))
        rows = admin.execute("SELECT n FROM pool_retry_writes ORDER BY n").fetchall()
        assert rows == [(1,), (2,)]
    finally:
        admin.execute("DROP TABLE pool_retry_writes")


def test_the_statement_sent_again_keeps_the_isolation_level_the_checkout_asked_for(
    pool_engine: Engine, admin: psycopg.Connection
) -> None:
    with pool_engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    _end_other_sessions(admin)
    with pool_engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        level = conn.execute(text("SHOW transaction_isolation")).scalar_one()
    assert level == "repeatable read"
    with Session(pool_engine) as session:  # and the pool's default again afterwards
        assert session.execute(text("SHOW transaction_isolation")).scalar_one() == "read committed"


def test_a_connection_that_dies_after_the_first_statement_is_not_sent_again(
    pool_engine: Engine, admin: psycopg.Connection
) -> None:
    with pool_engine.connect() as conn:
        conn.execute(text("SELECT 1"))
        _end_other_sessions(admin)
        # Its transaction's earlier work is gone: an error, never a silent second try.
        with pytest.raises(OperationalError) as raised:
            conn.execute(text("SELECT 2"))
    assert raised.value.connection_invalidated
    with pool_engine.connect() as conn:  # the pool has replaced it
        assert conn.execute(text("SELECT 3")).scalar_one() == 3
