"""WANGGE_COMPLIANCE_CLOCK=engine: a replayed week is answered as of the replay's moment.

`wangge up --simulate` replays last week while the wall clock is past its end; the
compliance engine's watermark is where the replay is. With the engine clock, the API's
default `as_of` is that watermark, so mid-week nobody is `missed` yet, where the wall
clock calls every worker missed.
"""

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from geodata.compliance import IsoWeek
from geodata.contract import Topics
from geodata.db.compliance_store import lock_clock, save_clock
from geodata.db.engine import libpq_url
from grid_service.app import ApiConfig
from tests.integration.live_support import serving
from tests.integration.pipeline_support import SHANGHAI, wait_until
from wangge.users_cli import add_user

pytestmark = pytest.mark.integration

LAST_WEEK = IsoWeek.week_of(datetime.now(UTC) - timedelta(days=7), SHANGHAI)


def _set_watermark(database_url: str, at: datetime) -> None:
    """Move the engine's clock as its batches do (the same lock and update)."""
    with psycopg.connect(libpq_url(database_url)) as conn:
        lock_clock(conn)
        save_clock(conn, at, None)


@pytest.fixture(scope="module")
def replaying(
    reference_database_factory: Callable[[], str],
    kafka_bootstrap: str,
    module_topic_factory: Callable[..., Topics],
) -> Iterator[tuple[httpx.Client, str]]:
    """The app on the engine's clock over the reference city, and an admin's client."""
    database_url = reference_database_factory()
    token = add_user(database_url, "replay-admin", "admin", None, None)
    config = ApiConfig(
        database_url,
        kafka_bootstrap,
        module_topic_factory(partitions=3),
        compliance_clock="engine",
        compliance_refresh_s=0.2,
    )
    _set_watermark(database_url, LAST_WEEK.start(SHANGHAI) + timedelta(days=2, hours=10))
    with (
        serving(config) as base,
        httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as client,
    ):
        yield client, database_url


def _statuses(answer: httpx.Response) -> set[str]:
    assert answer.status_code == 200, answer.text
    return {item["status"] for item in answer.json()["items"]}


def test_the_replayed_week_mid_week_is_answered_as_of_the_replay_not_missed(
    replaying: tuple[httpx.Client, str],
) -> None:
    client, _ = replaying
    answer = client.get("/api/v1/compliance", params={"week": str(LAST_WEEK), "level": "worker"})
    wednesday = LAST_WEEK.start(SHANGHAI) + timedelta(days=2, hours=10)
    assert datetime.fromisoformat(answer.json()["as_of"]) == wednesday
    statuses = _statuses(answer)
    assert len(answer.json()["items"]) == 2381
    assert "missed" not in statuses  # Wednesday: every worker can still make 3 patrols
    # As of the wall clock, after the week's end, the same week is all missed.
    now = datetime.now(UTC).isoformat()
    wall = client.get(
        "/api/v1/compliance", params={"week": str(LAST_WEEK), "level": "worker", "as_of": now}
    )
    assert _statuses(wall) == {"missed"}


def test_without_a_week_the_answer_is_the_replayed_one_and_follows_the_engine(
    replaying: tuple[httpx.Client, str],
) -> None:
    client, database_url = replaying
    saturday = LAST_WEEK.start(SHANGHAI) + timedelta(days=5, hours=9)
    _set_watermark(database_url, saturday)

    def follows() -> bool:
        answer = client.get("/api/v1/compliance", params={"level": "district"})
        body = answer.json()
        return body["week"] == str(LAST_WEEK) and datetime.fromisoformat(body["as_of"]) == saturday

    wait_until(follows, timeout=10, message="the API's clock did not follow the watermark")
