"""GET /api/v1/workers/{id}/track and /api/v1/workers/search on a seeded week of walks.

One copy of the reference city for the module, with one worker's week seeded as the
pipeline stores it (`wangge.benchmarks.walk_seed`): ~500 fixes, seven walks, one fix of
each doubtful kind. The track is checked against the seed and against the patrols route.
"""

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from geodata.contract import Topics
from geodata.db.engine import libpq_url
from grid_service.app import ApiConfig, create_app
from wangge.benchmarks.walk_seed import SeededWalk, local_week_bounds, seed_walk_week
from wangge.users_cli import add_user

pytestmark = pytest.mark.integration


class Env:
    """The app on the seeded city, the seed, and a token per caller."""

    def __init__(
        self, client: TestClient, url: str, walk: SeededWalk, tokens: dict[str, str]
    ) -> None:
        self.client, self.url, self.walk, self.tokens = client, url, walk, tokens

    def get(
        self, caller: str, path: str, headers: dict[str, str] | None = None, **params: Any
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[caller]}"} | (headers or {})
        return self.client.get(path, params=params, headers=headers)

    def track(self, caller: str = "admin", **params: Any) -> Any:
        return self.track_sent({}, caller, **params)

    def track_sent(self, headers: dict[str, str], caller: str = "admin", **params: Any) -> Any:
        start, end = local_week_bounds(self.walk.week)
        query = {"from": start.isoformat(), "to": end.isoformat()} | params
        path = f"/api/v1/workers/{self.walk.worker_id}/track"
        return self.get(caller, path, headers, **query)


@pytest.fixture(scope="module")
def env(
    reference_database_factory: Callable[[], str],
    kafka_bootstrap: str,
    module_topic_factory: Callable[..., Topics],
) -> Iterator[Env]:
    url = reference_database_factory()
    walk = seed_walk_week(url)
    community = walk.grid_code[:12]
    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute(
            "SELECT code FROM districts WHERE code <> %s ORDER BY code LIMIT 1",
            (walk.grid_code[:6],),
        ).fetchone()
    assert row is not None
    other_district = row[0]
    tokens = {
        "admin": add_user(url, "admin", "admin", None, None),
        "self": add_user(url, "walker", "worker", None, walk.worker_id),
        "community": add_user(url, "sup-community", "supervisor", community, None),
        "elsewhere": add_user(url, "sup-elsewhere", "supervisor", other_district, None),
    }
    app = create_app(ApiConfig(url, kafka_bootstrap, module_topic_factory(partitions=1)))
    # The tests below see each stored fix at once; the kept page's age has its own test.
    app.state.track_stamp_max_age_s = 0.0
    with TestClient(app) as client:
        yield Env(client, url, walk, tokens)


def test_the_week_is_every_fix_in_time_order_with_its_flags(env: Env) -> None:
    response = env.track()
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/geo+json")
    body = response.json()
    assert body["type"] == "FeatureCollection"
    assert body["next"] is None
    features = body["features"]
    assert body["number_returned"] == len(features) == env.walk.fixes
    times = [datetime.fromisoformat(f["properties"]["recorded_at"]) for f in features]
    assert times == sorted(times)
    assert times[0].utcoffset() == timedelta(hours=8)
    flags = Counter(flag for f in features for flag in f["properties"]["flags"])
    assert flags == Counter({k: v for k, v in env.walk.flagged.items() if v})
    outside = [f for f in features if "outside_assigned_grid" in f["properties"]["flags"]]
    assert sorted(f["properties"]["grid_code"] or "" for f in outside) == [
        "",  # the impossible jump, out of every grid
        env.walk.neighbour_code,
    ]
    assert all(f["geometry"]["type"] == "Point" for f in features)


def test_each_fix_names_the_patrol_the_patrols_route_lists(env: Env) -> None:
    body = env.track().json()
    features = body["features"]
    for feature in features:  # the page's patrols, by index
        index = feature["properties"]["patrol"]
        feature["properties"]["patrol"] = None if index is None else body["patrols"][index]
    patrols = env.get(
        "admin", f"/api/v1/workers/{env.walk.worker_id}/patrols", week=str(env.walk.week)
    ).json()
    listed = {(g["grid_code"], p["started_at"]): p for g in patrols["grids"] for p in g["patrols"]}
    assert len(listed) == 7  # the seed's seven walks
    members = Counter(
        (f["properties"]["patrol"]["grid_code"], f["properties"]["patrol"]["started_at"])
        for f in features
        if f["properties"]["patrol"] is not None
    )
    assert members.keys() == listed.keys()
    for key, patrol in listed.items():
        assert members[key] == patrol["checkin_count"], key
    for feature in features:
        patrol = feature["properties"]["patrol"]
        if patrol is not None:
            own = listed[(patrol["grid_code"], patrol["started_at"])]
            assert (patrol["counted"], patrol["reason"]) == (own["counted"], own["reason"])
    reasons = Counter(p["reason"] for p in listed.values())
    assert reasons == {"counted": 5, "already_counted_today": 1, "invalid:too_short": 1}
    # The fix too inaccurate and the one outside the grid are no part of any walk.
    doubtful = [f for f in features if {"low_accuracy", "outside_assigned_grid"} & set(
        f["properties"]["flags"])]  # fmt: skip
    assert doubtful
    assert all(f["properties"]["patrol"] is None for f in doubtful)


def test_pages_follow_next_to_the_end_and_hold_every_fix_once(env: Env) -> None:
    whole = [f["id"] for f in env.track().json()["features"]]
    paged: list[str] = []
    response = env.track(limit=97)
    while True:
        body = response.json()
        assert body["limit"] == 97
        assert len(body["features"]) <= 97
        paged += [f["id"] for f in body["features"]]
        if body["next"] is None:
            break
        response = env.client.get(
            body["next"], headers={"Authorization": f"Bearer {env.tokens['admin']}"}
        )
        assert response.status_code == 200, response.text
    assert paged == whole


def test_a_day_holds_that_days_fixes_only(env: Env) -> None:
    start, _ = local_week_bounds(env.walk.week)
    monday = env.track(**{"from": start.isoformat(), "to": (start + timedelta(days=1)).isoformat()})
    days = {f["properties"]["recorded_at"][:10] for f in monday.json()["features"]}
    assert days == {start.date().isoformat()}


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"from": "2020-09-08T00:00+08:00", "to": "2020-09-08T00:00+08:00"}, "invalid_interval"),
        ({"from": "2020-09-09T00:00+08:00", "to": "2020-09-08T00:00+08:00"}, "invalid_interval"),
        ({"from": "2020-08-01T00:00+08:00", "to": "2020-09-08T00:00+08:00"}, "invalid_interval"),
        ({"from": "2020-09-07T00:00:00", "to": "2020-09-08T00:00:00+08:00"}, "invalid_request"),
        ({"to": "2020-09-08T00:00:00+08:00"}, "invalid_request"),
        ({"from": "2020-09-07T00:00:00+08:00", "to": "2020-09-08T00:00:00+08:00",
          "after": "bm90LWEtY3Vyc29y"}, "invalid_cursor"),
        ({"from": "2020-09-07T00:00:00+08:00", "to": "2020-09-08T00:00:00+08:00",
          "limit": 5001}, "invalid_request"),
    ],
)  # fmt: skip
def test_a_bad_interval_or_page_is_422_with_a_stable_code(
    env: Env, params: dict[str, Any], code: str
) -> None:
    response = env.get("admin", f"/api/v1/workers/{env.walk.worker_id}/track", **params)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code


def test_a_supervisor_sees_the_fixes_in_its_area_and_another_area_none(env: Env) -> None:
    community = env.walk.grid_code[:12]
    features = env.track("community").json()["features"]
    assert features
    assert all(f["properties"]["grid_code"].startswith(community) for f in features)
    # Not the jump out of every grid, nor the neighbour's fix if it is in another community.
    expected = env.walk.fixes - 1 - (0 if env.walk.neighbour_code.startswith(community) else 1)
    assert len(features) == expected
    refused = env.track("elsewhere")
    assert (refused.status_code, refused.json()["code"]) == (403, "outside_area")
    assert len(env.track("self").json()["features"]) == env.walk.fixes


def test_the_search_finds_by_id_or_name_within_the_callers_scope(env: Env) -> None:
    worker = env.walk.worker_id
    found = env.get("admin", "/api/v1/workers/search", q=worker.lower()).json()["items"]
    assert [w["worker_id"] for w in found] == [worker]
    name = found[0]["name"]
    by_name = env.get("community", "/api/v1/workers/search", q=name[1:]).json()["items"]
    assert worker in [w["worker_id"] for w in by_name]
    assert all(
        code.startswith(env.walk.grid_code[:12]) for w in by_name for code in w["grid_codes"]
    )
    assert env.get("elsewhere", "/api/v1/workers/search", q=worker).json()["items"] == []
    mine = env.get("self", "/api/v1/workers/search", q="W").json()["items"]
    assert [w["worker_id"] for w in mine] == [worker]
    assert env.get("admin", "/api/v1/workers/search", q="%").json()["items"] == []


@contextmanager
def a_fix_stored(env: Env, after_start: timedelta) -> Iterator[None]:
    """One more check-in of the walker's in their assigned grid, removed at the end."""
    start, _ = local_week_bounds(env.walk.week)
    with psycopg.connect(libpq_url(env.url)) as conn:
        conn.execute(
            "INSERT INTO checkins (event_id, worker_id, recorded_at, lon, lat, geom, grid_code,"
            " in_assigned_grid, assignment_rule) SELECT gen_random_uuid(), %s, %s, 107.1, 34.3,"
            " ST_SetSRID(ST_MakePoint(107.1, 34.3), 4326), %s, true, 'contains'",
            (env.walk.worker_id, start + after_start, env.walk.grid_code),
        )
    try:
        yield
    finally:
        with psycopg.connect(libpq_url(env.url)) as conn:
            conn.execute(
                "DELETE FROM checkins WHERE worker_id = %s AND recorded_at = %s",
                (env.walk.worker_id, start + after_start),
            )


def test_a_fix_stored_after_an_answer_is_in_the_next_one(env: Env) -> None:
    before = env.track().json()["number_returned"]
    with a_fix_stored(env, timedelta(days=6, hours=20)):
        assert env.track().json()["number_returned"] == before + 1
    assert env.track().json()["number_returned"] == before


def test_a_kept_page_is_served_without_its_stamp_until_its_age_passes(env: Env) -> None:
    state = env.client.app.state  # type: ignore[attr-defined]
    state.track_stamp_max_age_s = 60.0
    try:
        before = env.track().json()["number_returned"]
        with a_fix_stored(env, timedelta(days=6, hours=19)):
            # Within the age the kept page is served as it was, the new fix not yet in it.
            assert env.track().json()["number_returned"] == before
            state.track_stamp_max_age_s = 0.0
            assert env.track().json()["number_returned"] == before + 1
    finally:
        state.track_stamp_max_age_s = 0.0


def test_an_unchanged_page_revalidates_as_304_and_a_changed_one_gets_a_new_etag(env: Env) -> None:
    first = env.track()
    etag = first.headers["etag"]
    again = env.track_sent({"If-None-Match": etag})
    assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)
    assert again.headers["cache-control"] == "no-store"  # personal data, as every answer
    with a_fix_stored(env, timedelta(days=6, hours=21)):
        changed = env.track_sent({"If-None-Match": etag})
        assert changed.status_code == 200
        assert changed.headers["etag"] != etag
        assert changed.json()["number_returned"] == first.json()["number_returned"] + 1


def test_a_page_is_gzipped_to_a_caller_that_takes_it_with_the_same_content(env: Env) -> None:
    plain = env.track_sent({"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    zipped = env.track_sent({"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert int(zipped.headers["content-length"]) < len(plain.content) / 4
    assert zipped.content == plain.content  # decoded by the client
    assert zipped.headers["etag"] != plain.headers["etag"]  # another representation
    assert "Accept-Encoding" in zipped.headers["vary"]
    again = env.track_sent({"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["etag"]})
    assert again.status_code == 304


def test_a_grid_assigned_after_the_snapshot_opens_the_track_to_its_supervisor_at_once(
    env: Env,
) -> None:
    # The roster in memory only ever says yes; a no is asked of the database.
    assert env.track("elsewhere").status_code == 403
    with psycopg.connect(libpq_url(env.url)) as conn:
        row = conn.execute(
            "SELECT g.code FROM grids g JOIN accounts a ON g.code LIKE a.area_prefix || '%%'"
            " WHERE a.name = 'sup-elsewhere' ORDER BY g.code LIMIT 1"
        ).fetchone()
        assert row is not None
        added = conn.execute(
            "INSERT INTO worker_assignments (worker_id, grid_code, valid_from)"
            " VALUES (%s, %s, now()) RETURNING id",
            (env.walk.worker_id, row[0]),
        ).fetchone()
        assert added is not None
    try:
        opened = env.track("elsewhere")
        assert opened.status_code == 200, opened.text
        assert opened.json()["features"] == []  # no fix of the week lies in that area
    finally:
        with psycopg.connect(libpq_url(env.url)) as conn:
            conn.execute("DELETE FROM worker_assignments WHERE id = %s", (added[0],))
