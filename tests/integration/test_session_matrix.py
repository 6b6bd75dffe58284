"""The authorization matrices again, every caller signed in with a password instead of a token.

A session must open exactly what the account's token opens: the same cases, the same
expected status and code, written once in test_auth and test_incident_access. Each caller
signs in through POST /api/v1/session; the client then carries only its cookie (and the
X-Requested-With header the pages send).
"""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from geodata.contract import Topics
from geodata.db.engine import create_db_engine
from grid_service.app import ApiConfig, create_app
from grid_service.auth import AuthConfig, install_auth
from tests.integration import test_auth, test_incident_access
from tests.integration.incident_support import Env as IncidentEnv
from tests.integration.incident_support import accounts_of, snapshot, store_incident
from tests.integration.incident_support import pick_city as pick_incident_city
from tests.integration.session_support import (
    FETCH,
    give_passwords,
    session_cookie,
    sign_in,
    use_session,
)

pytestmark = pytest.mark.integration

ACCOUNT_OF = {
    "worker_a": "worker-a",
    "worker_b": "worker-b",
    "sup_x": "sup-x",
    "sup_y": "sup-y",
    "sup_c": "sup-c",
    "admin": "admin",
}
"""The account each caller of the matrices signs in as (test_auth.make_accounts' names)."""

RELAXED = AuthConfig(sign_in_rate_per_s=100, sign_in_burst=100)


def _sessions(client: TestClient, database_url: str) -> dict[str, str]:
    """Give every caller's account a password, sign each in; the session id by caller."""
    give_passwords(database_url, ACCOUNT_OF.values())
    sessions = {}
    for caller, name in ACCOUNT_OF.items():
        use_session(client, None)
        sessions[caller] = session_cookie(sign_in(client, name))
    use_session(client, None)
    return sessions


# --------------------------------------------------------------------------- test_auth's


@pytest.fixture(scope="module")
def auth_matrix(
    reference_database_factory: Callable[[], str],
    kafka_bootstrap: str,
    module_topic_factory: Callable[..., Topics],
    reference_gpkg: Path,
) -> Iterator[tuple[test_auth.Matrix, dict[str, str]]]:
    """test_auth's matrix over its own app, with no tokens: a session per caller instead."""
    database_url = reference_database_factory()
    engine = create_db_engine(database_url)
    try:
        city = test_auth.pick_city(engine)
    finally:
        engine.dispose()
    test_auth.make_accounts(database_url, city)
    topics = module_topic_factory(partitions=1)
    app = create_app(ApiConfig(database_url, kafka_bootstrap, topics))
    install_auth(app, RELAXED)
    with TestClient(app, headers=FETCH) as client:
        sessions = _sessions(client, database_url)
        yield test_auth.Matrix(client, city, {}, reference_gpkg), sessions


@pytest.mark.parametrize("caller", test_auth.CALLERS)
@pytest.mark.parametrize("case", list(test_auth.EXPECTED))
def test_a_session_opens_what_the_token_opens(
    auth_matrix: tuple[test_auth.Matrix, dict[str, str]], case: str, caller: str
) -> None:
    matrix, sessions = auth_matrix
    use_session(matrix.client, sessions.get(caller))
    response = matrix.call(case, caller)
    expected = test_auth.EXPECTED[case][test_auth.CALLERS.index(caller)]
    test_auth.assert_cell(response, expected, caller, case)


# --------------------------------------------------------------------------- incidents'


@pytest.fixture(scope="module")
def incident_env(
    reference_database_factory: Callable[[], str],
) -> Iterator[tuple[IncidentEnv, dict[str, str]]]:
    """test_incident_access's app and city, with a session per caller and no tokens."""
    database_url = reference_database_factory()
    city = pick_incident_city(database_url)
    accounts_of(database_url, city)
    app = create_app(ApiConfig(database_url, "127.0.0.1:9"))  # these cases never produce
    install_auth(app, RELAXED)
    with TestClient(app, headers=FETCH) as client:
        sessions = _sessions(client, database_url)
        yield IncidentEnv(client, database_url, city, {}), sessions


@pytest.mark.parametrize("caller", test_auth.CALLERS)
@pytest.mark.parametrize("case", list(test_incident_access.EXPECTED))
def test_a_session_moves_and_reads_the_incidents_the_token_does(
    incident_env: tuple[IncidentEnv, dict[str, str]], case: str, caller: str
) -> None:
    env, sessions = incident_env
    use_session(env.client, sessions.get(caller))
    expected = test_incident_access.EXPECTED[case][test_auth.CALLERS.index(caller)]
    response, written = test_incident_access.matrix_call(env, case, caller)
    test_auth.assert_cell(response, expected, caller, case)
    if written is not None:
        _, _, version, history = snapshot(env.database_url, written)
        assert (version, history) == ((2, 1) if response.is_success else (1, 0)), expected


def test_without_the_fetch_header_a_session_moves_nothing(
    incident_env: tuple[IncidentEnv, dict[str, str]],
) -> None:
    env, sessions = incident_env
    use_session(env.client, sessions["admin"])
    incident = store_incident(
        env.database_url, env.city.grid_a, staff=env.city.worker_a, reporter=env.city.worker_a
    )
    response = env.client.patch(
        f"/api/v1/incidents/{incident}",
        json={"action": "cancel", "note": "forged"},
        headers={"If-Match": '"1"', "X-Requested-With": ""},
    )
    assert (response.status_code, response.json()["code"]) == (403, "fetch_header_missing")
    assert snapshot(env.database_url, incident)[2:] == (1, 0)
