"""Schemathesis against /openapi.json: no 5xx, and every answer as the definition describes.

Every operation of the real app, on a copy of the reference city and producing to the
real broker, gets about 60 generated requests (valid and invalid, plus schemathesis's
probes of undeclared methods): some 1,800 in all, the same ones on every run. Nothing is
excluded: /metrics and the tiles are documented without a body schema, so only their
statuses are checked, and the multipart upload takes the files schemathesis makes up;
/healthz may answer its documented 503 (no consumer runs here).
"""

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from geodata.contract import Topics
from geodata.notify import NotifyConfig
from grid_service.app import ApiConfig, create_app
from grid_service.auth import AuthConfig
from wangge.users_cli import add_user

pytestmark = pytest.mark.integration

WORKER_ID = "W00001"
EXAMPLES_PER_OPERATION = 60
"""Per operation, valid and invalid requests alike (derandomized: the same every run);
150 cost some three minutes of the suite on a 2-core machine."""

# The definition does not depend on where the services are, so it is read at collection
# from an app that is never started: asking the app itself for /openapi.json would run its
# lifespan, whose background threads then ran through the rest of the collection, where
# CPython 3.11 failed pytest's own parsing of later modules ("AST constructor recursion
# depth mismatch", CPython issue 106905).
schema = schemathesis.openapi.from_dict(
    create_app(ApiConfig("postgresql://unused@127.0.0.1/unused", "unused:9092")).openapi()
)
# GET /api/v1/stream never ends: its first event (the feed's status) is the answer checked.
schema.config.max_stream_events = 1


@pytest.fixture(scope="module")
def city(reference_database_factory: Callable[[], str]) -> tuple[str, dict[str, str]]:
    """A fresh copy of the reference city, and the tokens of an admin and of a worker."""
    url = reference_database_factory()
    tokens = {
        "admin": add_user(url, "fuzz-admin", "admin", None, None),
        "worker": add_user(url, "fuzz-worker", "worker", None, WORKER_ID),
    }
    return url, tokens


@pytest.fixture
def app(
    city: tuple[str, dict[str, str]], kafka_bootstrap: str, topic_factory: Callable[..., Topics]
) -> FastAPI:
    """The real app on the city, producing to topics of this test's own."""
    # Fuzzing posts thousands of writes a minute with one token: the write limit would
    # answer most of them 429 and leave the routes behind it untested.
    auth = AuthConfig(write_rate_per_s=1e6, write_burst=1e6)
    # Calls to workers are on (a webhook nothing listens on: deliveries fail and are retried
    # in the background), so the call route answers as it does in a city, not its 503.
    notify = NotifyConfig(webhook_url="http://127.0.0.1:9/wangge-fuzz")
    config = ApiConfig(city[0], kafka_bootstrap, topic_factory(partitions=1), auth, notify=notify)
    return create_app(config)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,  # a tile at z0 or a 10,000-vertex intersection takes what it takes
    derandomize=True,  # CI runs the same cases every time; a failure reproduces locally
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented_without_5xx(
    case: Any, app: FastAPI, city: tuple[str, dict[str, str]]
) -> None:
    role = _caller(case)
    checks = [response_schema_conformance, status_code_conformance]
    # Readiness answers 503 by design while a part is not ready (here: no consumer runs),
    # as documented; everywhere else a 5xx is a bug.
    if case.path != "/healthz":
        checks.append(not_a_server_error)
    case.call_and_validate(
        app=app, headers={"Authorization": f"Bearer {city[1][role]}"}, checks=checks
    )


def _caller(case: Any) -> str:
    """The admin, except where only the worker's own token may post: then the worker.

    A worker's events must carry its own id, so that id is written into the generated
    body; otherwise nearly every valid check-in would stop at 403 and never reach the
    broker.
    """
    body = case.body
    if case.path == "/api/v1/checkins":
        items = body.get("checkins", [body]) if isinstance(body, dict) else []
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and "worker_id" in item:
                item["worker_id"] = WORKER_ID
        return "worker"
    if (
        case.path == "/api/v1/incidents"
        and isinstance(body, dict)
        and body.get("source") == "worker"
    ):
        body["reporter_id"] = WORKER_ID
        return "worker"
    return "admin"
