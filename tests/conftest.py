"""Shared fixtures: real PostGIS databases made per test module, never shared state."""

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import hypothesis
import psycopg
import pytest
from sqlalchemy import Engine

from geodata.contract import Topics
from geodata.db import migrate
from geodata.db.engine import create_db_engine
from wangge.settings import DatabaseSettings

# Collecting the OpenAPI fuzz test's coverage cases recurses deep, and hypothesis then
# parses a large module's source to describe a lambda: near the default limit CPython 3.11
# fails the whole collection with "SystemError: AST constructor recursion depth mismatch".
# Set before any test module is imported; later changes are undone by hypothesis.
sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

ADMIN_DB = "postgres"

# The suite replays 2020's reference week through the real gateway and consumers, so it
# keeps only the fixed floor of event times; the age limit itself is tested on its own.
os.environ.setdefault("WANGGE_EVENT_MAX_AGE_DAYS", "0")


INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_addoption(parser: pytest.Parser) -> None:
    """`--max-examples N`: the fast lane's budget for every property test."""
    parser.addoption(
        "--max-examples",
        type=int,
        default=None,
        help="run each hypothesis test with at most N examples (make test-unit)",
    )


def _cap_examples(items: list[pytest.Item], cap: int) -> None:
    # Explicit @settings(max_examples=...) outrank any hypothesis profile, so the cap is set
    # where hypothesis's own pytest plugin adjusts a test's settings: on the test function.
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        function = getattr(item.obj, "__func__", item.obj)
        current = getattr(function, "_hypothesis_internal_use_settings", None)
        if isinstance(current, hypothesis.settings) and current.max_examples > cap:
            capped = hypothesis.settings(parent=current, max_examples=cap)
            function._hypothesis_internal_use_settings = capped


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse to run an integration test without its marker: `-m "not integration"` is the
    fast lane, and one unmarked module would quietly pull PostGIS and the broker into it.
    With `--max-examples`, cap every property test's examples."""
    cap: int | None = config.getoption("--max-examples")
    if cap is not None:
        _cap_examples(items, cap)
    unmarked = sorted(
        {
            str(item.path.relative_to(INTEGRATION_DIR.parent.parent))
            for item in items
            if item.path.is_relative_to(INTEGRATION_DIR)
            and item.get_closest_marker("integration") is None
        }
    )
    if unmarked:
        raise pytest.UsageError(
            "integration tests without `pytestmark = pytest.mark.integration`: "
            + ", ".join(unmarked)
        )


def _admin_url() -> str:
    base = DatabaseSettings().url.rsplit("/", 1)[0]
    return f"{base}/{ADMIN_DB}"


def _drop_databases(names: list[str]) -> None:
    """Have the session's databases dropped by a process of its own, which outlives the
    session (`tests.drop_databases`: each drop waits for a checkpoint)."""
    if names:
        subprocess.Popen(
            [sys.executable, "-m", "tests.drop_databases", _admin_url(), *names],
            cwd=Path(__file__).parent.parent,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


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
    _drop_databases(created)


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


@pytest.fixture(scope="session")
def reference_gpkg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference dataset (seed 2020) written once per test session."""
    from geodata.dataset.generate import generate_reference_dataset, write_geopackage

    path = tmp_path_factory.mktemp("reference") / "baoji-2020.gpkg"
    write_geopackage(generate_reference_dataset(2020), path)
    return path


@pytest.fixture(scope="session")
def reference_template(database_factory: Callable[..., str], reference_gpkg: Path) -> str:
    """Name of a database holding the imported reference dataset, used as a template."""
    from geodata.dataset.importer import import_boundaries

    url = database_factory()
    engine = create_db_engine(url)
    try:
        import_boundaries(engine, reference_gpkg)
    finally:
        engine.dispose()
    return url.rsplit("/", 1)[1]


@pytest.fixture(scope="session")
def reference_database_factory(
    postgis_server: str, reference_template: str
) -> Iterator[Callable[[], str]]:
    """Factory: a fresh copy of the reference database (1,138 grids), cheap to make."""
    created: list[str] = []

    def make() -> str:
        name = f"wangge_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(_admin_url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{reference_template}"')
        created.append(name)
        return f"{postgis_server}/{name}"

    yield make
    _drop_databases(created)


@pytest.fixture
def reference_database_url(reference_database_factory: Callable[[], str]) -> str:
    """A fresh database with the reference dataset for one test."""
    return reference_database_factory()


def _topic_factory(bootstrap: str) -> Iterator[Callable[..., Topics]]:
    """Make topics under fresh namespaces; delete them all when the fixture ends.

    The local broker keeps every topic in memory, and a whole run's leftovers (hundreds)
    slow the broker a user runs `wangge up` against next.
    """
    from wangge import services

    made: list[Topics] = []

    def make(partitions: int = 6) -> Topics:
        topics = Topics.under(f"t{uuid.uuid4().hex[:10]}.")
        made.append(topics)
        services.ensure_topics(bootstrap, partitions, topics)
        return topics

    yield make
    for topics in made:
        services.delete_topics(bootstrap, topics)


@pytest.fixture
def topic_factory(kafka_bootstrap: str) -> Iterator[Callable[..., Topics]]:
    """Factory: the contract's topics under a fresh namespace, so tests never share events."""
    yield from _topic_factory(kafka_bootstrap)


@pytest.fixture(scope="module")
def module_topic_factory(kafka_bootstrap: str) -> Iterator[Callable[..., Topics]]:
    """Like `topic_factory`, for a module's shared fixtures: deleted when the module ends."""
    yield from _topic_factory(kafka_bootstrap)
