"""Authentication and scopes on the real app: the authorization matrix, tokens, rate limits.

The matrix runs every (caller, endpoint, object) pair against one app on a copy of the
reference city and asserts the exact status and code: worker A and B, supervisors of
district X, of district Y and of a community C inside X, an admin, and no token at all.
"""

import contextlib
import hashlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Client, Response
from sqlalchemy import Engine, text

from geodata.accounts import AccountExists, AccountNotFound, InvalidAccount, new_token
from geodata.contract import Topics
from geodata.db.engine import create_db_engine
from geodata.errors import WorkerNotFound
from geodata.events import CHECKIN_EXAMPLE, INCIDENT_EXAMPLE
from grid_service.app import ApiConfig, create_app
from grid_service.auth import AuthConfig, install_auth
from wangge.users_cli import add_user, issue_token, revoke_tokens

pytestmark = pytest.mark.integration

WEEK = "2020-W37"
AS_OF = "2020-09-10T12:00:00+08:00"
CALLERS = ("worker_a", "worker_b", "sup_x", "sup_y", "sup_c", "admin", "anonymous")


@dataclass(frozen=True)
class City:
    """The objects of the matrix, picked from the reference dataset."""

    worker_a: str
    grid_a: str
    worker_b: str
    district_x: str
    district_y: str
    community_c: str


def pick_city(engine: Engine) -> City:
    """Worker A in district X (community C inside it), worker B in another district Y."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT worker_id, min(grid_code) AS grid FROM worker_assignments"
                " GROUP BY worker_id HAVING count(DISTINCT left(grid_code, 12)) = 1"
                " ORDER BY worker_id"
            )
        ).all()
    worker_a, grid_a = rows[0]
    worker_b, grid_b = next(r for r in rows if r.grid[:6] != grid_a[:6])
    return City(worker_a, grid_a, worker_b, grid_a[:6], grid_b[:6], grid_a[:12])


def make_accounts(database_url: str, city: City) -> dict[str, str]:
    """One account per caller of the matrix; the token by caller."""
    return {
        "worker_a": add_user(database_url, "worker-a", "worker", None, city.worker_a),
        "worker_b": add_user(database_url, "worker-b", "worker", None, city.worker_b),
        "sup_x": add_user(database_url, "sup-x", "supervisor", city.district_x, None),
        "sup_y": add_user(database_url, "sup-y", "supervisor", city.district_y, None),
        "sup_c": add_user(database_url, "sup-c", "supervisor", city.community_c, None),
        "admin": add_user(database_url, "admin", "admin", None, None),
    }


def bearer(token: str | None) -> dict[str, str]:
    """The Authorization header of a token, or none."""
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def checkin(worker_id: str) -> dict[str, Any]:
    """A valid check-in of `worker_id` a minute ago."""
    recorded = datetime.now(UTC) - timedelta(minutes=1)
    return CHECKIN_EXAMPLE | {
        "event_id": str(uuid.uuid4()),
        "worker_id": worker_id,
        "recorded_at": recorded.isoformat(),
    }


def incident(source: str, reporter_id: str | None) -> dict[str, Any]:
    """A valid incident report of a minute ago from `source`."""
    reported = datetime.now(UTC) - timedelta(minutes=1)
    return INCIDENT_EXAMPLE | {
        "event_id": str(uuid.uuid4()),
        "incident_id": str(uuid.uuid4()),
        "source": source,
        "reporter_id": reporter_id,
        "reported_at": reported.isoformat(),
    }


# --------------------------------------------------------------------------- the matrix

# Each cell is "status" or "status code"; a 2xx only where the role allows it.
OK, ACC, NONE = "200", "202", "401 missing_token"
ROLE, AREA = "403 forbidden", "403 outside_area"
SELF, SRC = "403 worker_mismatch", "403 source_not_allowed"
GONE = "404 worker_not_found"
OFF = "503 notify_unavailable"  # allowed, but this app has no notify webhook
EXPECTED: dict[str, tuple[str, ...]] = {
    # case                             worker_a worker_b sup_x  sup_y  sup_c  admin  anonymous
    "checkin as A":                    (ACC,    SELF,    ROLE,  ROLE,  ROLE,  ROLE,  NONE),
    "checkin as B":                    (SELF,   ACC,     ROLE,  ROLE,  ROLE,  ROLE,  NONE),
    "checkin batch of A then B":       (SELF,   SELF,    ROLE,  ROLE,  ROLE,  ROLE,  NONE),
    "incident by worker A":            (ACC,    SELF,    SRC,   SRC,   SRC,   SRC,   NONE),
    "incident from the hotline":       (SRC,    SRC,     ACC,   ACC,   ACC,   ACC,   NONE),
    "compliance of X":                 (ROLE,   ROLE,    OK,    AREA,  AREA,  OK,    NONE),
    "compliance of Y":                 (ROLE,   ROLE,    AREA,  OK,    AREA,  OK,    NONE),
    "compliance of C":                 (ROLE,   ROLE,    OK,    AREA,  OK,    OK,    NONE),
    "compliance of the caller's area": (ROLE,   ROLE,    OK,    OK,    OK,    OK,    NONE),
    "patrols of A":                    (OK,     SELF,    OK,    AREA,  OK,    OK,    NONE),
    "patrols of B":                    (SELF,   OK,      AREA,  OK,    AREA,  OK,    NONE),
    "patrols of an unknown worker":    (SELF,   SELF,    AREA,  AREA,  AREA,  GONE,  NONE),
    "track of A":                      (OK,     SELF,    OK,    AREA,  OK,    OK,    NONE),
    "track of B":                      (SELF,   OK,      AREA,  OK,    AREA,  OK,    NONE),
    "track of an unknown worker":      (SELF,   SELF,    AREA,  AREA,  AREA,  GONE,  NONE),
    "worker search (scoped answer)":   (OK,     OK,      OK,    OK,    OK,    OK,    NONE),
    "boundary import (dry run)":       (ROLE,   ROLE,    ROLE,  ROLE,  ROLE,  OK,    NONE),
    "grid in C (public geometry)":     (OK,     OK,      OK,    OK,    OK,    OK,    OK),
    "OGC incidents (personal data)":   ("403",  "403",   OK,    OK,    OK,    OK,    "401"),
    "export compliance of X":          (ROLE,   ROLE,    OK,    AREA,  AREA,  OK,    NONE),
    "calls of worker A":               (ROLE,   ROLE,    OK,    AREA,  OK,    OK,    NONE),
    "call worker A (no webhook)":      (ROLE,   ROLE,    OFF,   AREA,  OFF,   OFF,   NONE),
}  # fmt: skip
"""Every endpoint × object × caller, written out rather than derived from the rules."""

# Routes written by other issues: their rows run once the app mounts them.


@dataclass
class Matrix:
    """The app under test, its city, and a token per caller."""

    # A TestClient; typed as the httpx client it is, since starlette types it against
    # httpx2 (not installed), which leaves its answers untyped.
    client: Client
    city: City
    tokens: dict[str, str]
    reference_gpkg: Path

    def call(self, case: str, caller: str) -> Response:
        """Make the request of `case` as `caller`."""
        city, client = self.city, self.client
        headers = bearer(self.tokens.get(caller))
        if case.startswith("checkin"):
            items = {
                "checkin as A": [checkin(city.worker_a)],
                "checkin as B": [checkin(city.worker_b)],
                "checkin batch of A then B": [checkin(city.worker_a), checkin(city.worker_b)],
            }[case]
            body: Any = items[0] if len(items) == 1 else {"checkins": items}
            return client.post("/api/v1/checkins", json=body, headers=headers)
        if case.startswith("incident"):
            report = (
                incident("worker", city.worker_a)
                if case == "incident by worker A"
                else incident("hotline", None)
            )
            return client.post("/api/v1/incidents", json=report, headers=headers)
        if case.startswith("compliance"):
            code = {
                "compliance of X": city.district_x,
                "compliance of Y": city.district_y,
                "compliance of C": city.community_c,
                "compliance of the caller's area": None,
            }[case]
            params = {"week": WEEK, "as_of": AS_OF, "level": "grid"}
            if code is not None:
                params["code"] = code
            return client.get("/api/v1/compliance", params=params, headers=headers)
        if case.startswith("patrols"):
            worker = {
                "patrols of A": city.worker_a,
                "patrols of B": city.worker_b,
                "patrols of an unknown worker": "W99999",
            }[case]
            return client.get(
                f"/api/v1/workers/{worker}/patrols", params={"week": WEEK}, headers=headers
            )
        if case.startswith("track"):
            worker = {
                "track of A": city.worker_a,
                "track of B": city.worker_b,
                "track of an unknown worker": "W99999",
            }[case]
            week = {"from": "2020-09-07T00:00:00+08:00", "to": "2020-09-14T00:00:00+08:00"}
            return client.get(f"/api/v1/workers/{worker}/track", params=week, headers=headers)
        if case == "worker search (scoped answer)":
            return client.get("/api/v1/workers/search", params={"q": "W"}, headers=headers)
        if case == "boundary import (dry run)":
            with self.reference_gpkg.open("rb") as file:
                return client.post(
                    "/api/v1/admin/boundaries",
                    params={"dry_run": "true"},
                    files={"file": ("baoji.gpkg", file, "application/geopackage+sqlite3")},
                    headers=headers,
                )
        if case == "grid in C (public geometry)":
            return client.get(f"/api/v1/grids/{city.grid_a}", headers=headers)
        if case == "OGC incidents (personal data)":
            return client.get("/ogc/collections/incidents/items", headers=headers)
        if case == "export compliance of X":
            params = {"week": WEEK, "as_of": AS_OF, "code": city.district_x}
            return client.get("/api/v1/compliance/export", params=params, headers=headers)
        if case == "calls of worker A":
            return client.get(f"/api/v1/workers/{city.worker_a}/notify", headers=headers)
        if case == "call worker A (no webhook)":
            url = f"/api/v1/workers/{city.worker_a}/notify"
            return client.post(url, json={"week": WEEK}, headers=headers)
        raise AssertionError(f"no request for {case!r}")


@pytest.fixture(scope="module")
def matrix(
    reference_database_factory: Callable[[], str],
    kafka_bootstrap: str,
    module_topic_factory: Callable[..., Topics],
    reference_gpkg: Path,
) -> Iterator[Matrix]:
    """One app for the whole matrix: every case reads, or dry-runs, or produces new events."""
    database_url = reference_database_factory()
    engine = create_db_engine(database_url)
    try:
        city = pick_city(engine)
    finally:
        engine.dispose()
    tokens = make_accounts(database_url, city)
    topics = module_topic_factory(partitions=1)
    app = create_app(ApiConfig(database_url, kafka_bootstrap, topics))
    with TestClient(app) as client:
        yield Matrix(client, city, tokens, reference_gpkg)


def assert_cell(response: Response, expected: str, caller: str, case: str) -> None:
    """`response` is what a matrix cell says: "status" or "status code", 2xx only if allowed."""
    status, _, code = expected.partition(" ")
    if response.is_success:
        assert status.startswith("2"), f"unauthorised {response.status_code}: {caller} {case}"
    assert str(response.status_code) == status, (caller, case, response.text)
    if code:
        assert response.json()["code"] == code, response.text
    if response.status_code == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("case", list(EXPECTED))
def test_authorization_matrix(matrix: Matrix, case: str, caller: str) -> None:
    assert_cell(matrix.call(case, caller), EXPECTED[case][CALLERS.index(caller)], caller, case)


def test_the_matrix_has_every_caller_for_every_case() -> None:
    assert all(len(row) == len(CALLERS) for row in EXPECTED.values())


def test_a_supervisors_listing_defaults_to_its_own_area(matrix: Matrix) -> None:
    for caller, area in (("sup_c", matrix.city.community_c), ("sup_x", matrix.city.district_x)):
        response = matrix.client.get(
            "/api/v1/compliance",
            params={"week": WEEK, "as_of": AS_OF, "level": "grid"},
            headers=bearer(matrix.tokens[caller]),
        )
        body = response.json()
        assert body["code"] == area
        assert body["items"]
        assert all(item["grid_code"].startswith(area) for item in body["items"])


# --------------------------------------------------------------------------- one app each


@dataclass
class Env:
    """An app on a fresh copy of the reference city, without a broker."""

    client: Client  # a TestClient, typed as Matrix.client is
    database_url: str
    city: City
    tokens: dict[str, str]


@pytest.fixture
def env_factory(reference_database_factory: Callable[[], str]) -> Iterator[Callable[..., Env]]:
    """Factory: an app with the given AuthConfig on a fresh city, with its accounts."""
    with contextlib.ExitStack() as clients:

        def make(config: AuthConfig | None = None) -> Env:
            database_url = reference_database_factory()
            engine = create_db_engine(database_url)
            try:
                city = pick_city(engine)
            finally:
                engine.dispose()
            tokens = make_accounts(database_url, city)
            # No broker: these tests never produce, and the producer connects on first use.
            app = create_app(ApiConfig(database_url, "127.0.0.1:9"))
            install_auth(app, config)
            client = clients.enter_context(TestClient(app))
            return Env(client, database_url, city, tokens)

        yield make


def patrols_of(env: Env, caller: str, token: str | None = None) -> Response:
    """GET worker A's patrols with `caller`'s token (or `token`)."""
    return env.client.get(
        f"/api/v1/workers/{env.city.worker_a}/patrols",
        params={"week": WEEK},
        headers=bearer(token if token is not None else env.tokens[caller]),
    )


def test_the_plaintext_token_is_stored_nowhere_only_its_sha256(
    env_factory: Callable[..., Env],
) -> None:
    env = env_factory()
    engine = create_db_engine(env.database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT row_to_json(a)::text AS account, row_to_json(t)::text AS token,"
                    " t.token_hash FROM accounts a JOIN account_tokens t ON t.account_id = a.id"
                )
            ).all()
            with pytest.raises(Exception, match="sha256_hex"):
                connection.execute(
                    text("INSERT INTO account_tokens (account_id, token_hash) VALUES (1, :t)"),
                    {"t": new_token()},
                )
    finally:
        engine.dispose()
    assert len(rows) == len(env.tokens)
    stored = " ".join(row.account + row.token for row in rows)
    for token in env.tokens.values():
        assert token not in stored
        assert token[3:] not in stored  # nor its random part
    assert {row.token_hash for row in rows} == {
        hashlib.sha256(token.encode()).hexdigest() for token in env.tokens.values()
    }


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "missing_token"),
        ("Bearer", "invalid_token"),
        ("Bearer not-a-token", "invalid_token"),
        ("Basic d29ya2VyOnB3", "invalid_token"),
        ("Bearer wg_" + "A" * 43, "invalid_token"),  # well formed, never issued
    ],
)
def test_missing_or_bad_tokens_are_401_with_a_bearer_challenge(
    matrix: Matrix, authorization: str | None, code: str
) -> None:
    # The matrix's app: refused before anything is read or produced, so it stays as it was.
    client = matrix.client
    headers = {} if authorization is None else {"Authorization": authorization}
    requests: list[Callable[[], Response]] = [
        lambda: client.get("/api/v1/compliance", params={"week": WEEK}, headers=headers),
        lambda: client.post("/api/v1/checkins", json={}, headers=headers),
    ]
    for request in requests:
        response = request()
        assert (response.status_code, response.json()["code"]) == (401, code)
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith('Bearer realm="wangge"')
        assert ('error="invalid_token"' in challenge) == (code == "invalid_token")


def test_a_revoked_token_is_refused_once_the_cache_ttl_has_passed(
    env_factory: Callable[..., Env],
) -> None:
    env = env_factory(AuthConfig(token_cache_ttl_s=0.5))
    assert patrols_of(env, "worker_a").status_code == 200
    assert revoke_tokens(env.database_url, "worker-a") == 1
    time.sleep(0.6)
    refused = patrols_of(env, "worker_a")
    assert (refused.status_code, refused.json()["code"]) == (401, "invalid_token")
    assert revoke_tokens(env.database_url, "worker-a") == 0
    fresh = issue_token(env.database_url, "worker-a")
    assert patrols_of(env, "worker_a", fresh).status_code == 200
    assert patrols_of(env, "worker_a").status_code == 401  # the old one stays revoked


def test_without_a_cache_revocation_applies_at_once(env_factory: Callable[..., Env]) -> None:
    env = env_factory(AuthConfig(token_cache_ttl_s=0))
    assert patrols_of(env, "worker_a").status_code == 200
    revoke_tokens(env.database_url, "worker-a")
    assert patrols_of(env, "worker_a").status_code == 401


def test_writes_are_rate_limited_per_token_with_retry_after(
    env_factory: Callable[..., Env],
) -> None:
    env = env_factory(AuthConfig(write_rate_per_s=0.5, write_burst=3))
    post = env.client.post
    # Invalid bodies: the limit is spent before the body is read, and nothing is produced.
    for _ in range(3):
        assert post("/api/v1/checkins", json={}, headers=bearer(env.tokens["worker_a"])).is_error
    limited = post("/api/v1/checkins", json={}, headers=bearer(env.tokens["worker_a"]))
    assert (limited.status_code, limited.json()["code"]) == (429, "rate_limited")
    assert limited.headers["Retry-After"] == "2"
    incident_limited = post("/api/v1/incidents", json={}, headers=bearer(env.tokens["worker_a"]))
    assert incident_limited.status_code == 429
    other = post("/api/v1/checkins", json={}, headers=bearer(env.tokens["worker_b"]))
    assert other.status_code == 422  # worker B's token has its own allowance
    assert patrols_of(env, "worker_a").status_code == 200  # reads are not limited
    # A second token of the same account is limited on its own.
    second = issue_token(env.database_url, "worker-a")
    assert post("/api/v1/checkins", json={}, headers=bearer(second)).status_code == 422


def test_a_refused_boundary_file_answers_422_with_its_problems(
    env_factory: Callable[..., Env],
) -> None:
    env = env_factory()
    admin = bearer(env.tokens["admin"])
    broken = b'{"type": "FeatureCollection", "features": []}'
    response = env.client.post(
        "/api/v1/admin/boundaries",
        files={"file": ("../../etc/empty.geojson", broken, "application/geo+json")},
        headers=admin,
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "import_refused"
    assert body["problems"] == [
        {
            "layer": "file",
            "feature": "empty.geojson",
            "reason": body["problems"][0]["reason"],
            "detail": body["problems"][0]["detail"],
        }
    ]
    assert body["problems"][0]["reason"]
    unsupported = env.client.post(
        "/api/v1/admin/boundaries", files={"file": ("grids.csv", b"code\n1")}, headers=admin
    )
    assert unsupported.json()["problems"][0]["reason"] == "unsupported_format"
    no_file = env.client.post("/api/v1/admin/boundaries", content=b"{}", headers=admin)
    assert (no_file.status_code, no_file.json()["code"]) == (422, "invalid_request")


def test_a_supervisor_reads_only_its_own_grids_of_a_worker_with_grids_elsewhere(
    env_factory: Callable[..., Env],
) -> None:
    env = env_factory()
    engine = create_db_engine(env.database_url)
    try:
        with engine.begin() as connection:
            grid_y = connection.execute(
                text("SELECT min(code) FROM grids WHERE left(code, 6) = :y"),
                {"y": env.city.district_y},
            ).scalar_one()
            connection.execute(
                text(
                    "INSERT INTO worker_assignments (worker_id, grid_code, valid_from)"
                    " VALUES (:w, :g, '2020-01-01T00:00:00+08:00')"
                ),
                {"w": env.city.worker_a, "g": grid_y},
            )
    finally:
        engine.dispose()
    grids = {
        caller: [g["grid_code"] for g in patrols_of(env, caller).json()["grids"]]
        for caller in ("worker_a", "sup_x", "sup_y", "admin")
    }
    assert sorted(grids["admin"]) == sorted([env.city.grid_a, grid_y]) == sorted(grids["worker_a"])
    assert grids["sup_x"] == [env.city.grid_a]
    assert grids["sup_y"] == [grid_y]


def test_account_rules_are_checked_against_the_city(env_factory: Callable[..., Env]) -> None:
    env = env_factory()
    url = env.database_url
    with pytest.raises(WorkerNotFound):
        add_user(url, "ghost", "worker", None, "W99999")
    with pytest.raises(InvalidAccount, match="no district"):
        add_user(url, "nowhere", "supervisor", "999999", None)
    with pytest.raises(InvalidAccount, match="no community"):
        add_user(url, "nowhere", "supervisor", env.city.community_c[:9] + "999", None)
    with pytest.raises(AccountExists):
        add_user(url, "admin", "admin", None, None)
    with pytest.raises(AccountNotFound):
        issue_token(url, "nobody")
    with pytest.raises(AccountNotFound):
        revoke_tokens(url, "nobody")
    # Another token of an account works beside the first.
    second = issue_token(url, "sup-c")
    for token in (second, env.tokens["sup_c"]):
        response = env.client.get(
            "/api/v1/compliance", params={"week": WEEK}, headers=bearer(token)
        )
        assert response.status_code == 200, response.text


def test_every_auth_error_is_documented_in_openapi(matrix: Matrix) -> None:
    document = matrix.client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    checkins = document["paths"]["/api/v1/checkins"]["post"]
    assert {"401", "403", "429"} <= set(checkins["responses"])
    assert checkins["security"] == [{"bearer": []}]
    boundaries = document["paths"]["/api/v1/admin/boundaries"]["post"]
    assert "multipart/form-data" in boundaries["requestBody"]["content"]
