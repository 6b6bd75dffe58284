"""The API keeps what its startup made out of the garbage collector's full collections.

A full collection walks every tracked object and pauses every request meanwhile; the
modules, the app and its routes live as long as the process, so walking them only made
that pause longer (grid_service/app.py freezes them). Counted here, never timed.
"""

import gc
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from geodata.contract import Topics
from grid_service.app import ApiConfig, create_app

pytestmark = pytest.mark.integration

STARTUP_OBJECTS_AT_LEAST = 100_000
"""The API's imports alone track some 240,000 objects; fewer frozen means they were not."""


def _api(database_url: str, bootstrap: str, topics: Topics) -> TestClient:
    return TestClient(create_app(ApiConfig(database_url, bootstrap, topics)))


def test_a_full_collection_while_serving_walks_only_what_came_after_startup(
    database_url: str, kafka_bootstrap: str, topic_factory: Callable[..., Topics]
) -> None:
    with _api(database_url, kafka_bootstrap, topic_factory()) as client:
        frozen = gc.get_freeze_count()
        assert client.get("/livez").status_code == 200
        walked = len(gc.get_objects())  # what a full collection would walk now
    assert frozen >= STARTUP_OBJECTS_AT_LEAST
    assert walked < frozen // 10


def test_shutdown_hands_the_startup_heap_back_to_the_collector(
    database_url: str, kafka_bootstrap: str, topic_factory: Callable[..., Topics]
) -> None:
    with _api(database_url, kafka_bootstrap, topic_factory()):
        assert gc.get_freeze_count() >= STARTUP_OBJECTS_AT_LEAST
    # Else every app a test process starts would keep its whole heap until the process ends.
    assert gc.get_freeze_count() == 0
