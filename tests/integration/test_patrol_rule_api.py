"""The API judges compliance by the patrol rule it was built with, not by a default."""

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from geodata.compliance import ComplianceConfig
from geodata.db.engine import create_db_engine
from grid_service.app import ApiConfig, create_app
from wangge.users_cli import add_user

pytestmark = pytest.mark.integration


def _a_staffed_grid(database_url: str) -> str:
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            code: str = connection.execute(
                text("SELECT grid_code FROM worker_assignments ORDER BY grid_code LIMIT 1")
            ).scalar_one()
    finally:
        engine.dispose()
    return code


@pytest.mark.parametrize("weekly_required", [3, 5])
def test_workers_owe_the_weekly_patrols_the_app_was_configured_with(
    reference_database_factory: Callable[[], str], weekly_required: int
) -> None:
    database_url = reference_database_factory()
    grid = _a_staffed_grid(database_url)
    token = add_user(database_url, "admin", "admin", None, None)
    config = ApiConfig(
        database_url,
        "127.0.0.1:9",  # no broker: nothing is produced
        compliance=ComplianceConfig(weekly_required=weekly_required),
    )
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(config), headers=headers) as client:
        response = client.get(
            "/api/v1/compliance",
            params={"week": "2020-W37", "as_of": "2020-09-14T00:00:00+08:00", "code": grid},
        )

    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert items
    assert {item["required"] for item in items} == {weekly_required}
