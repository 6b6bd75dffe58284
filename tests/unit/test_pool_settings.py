"""The API's pool comes from WANGGE_DB_POOL_*, and a pool too small for the rule is refused."""

import pytest
from pydantic import ValidationError

from geodata.db.engine import PoolPolicy
from wangge.adapter_configs import api_config
from wangge.settings import DatabaseSettings


def test_the_api_keeps_the_pool_the_settings_ask_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANGGE_DB_POOL_SIZE", "24")
    monkeypatch.setenv("WANGGE_DB_POOL_RECYCLE_S", "600")
    assert api_config().db_pool == PoolPolicy(size=24, recycle_s=600)


def test_without_the_settings_the_api_keeps_the_default_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WANGGE_DB_POOL_SIZE", raising=False)
    monkeypatch.delenv("WANGGE_DB_POOL_RECYCLE_S", raising=False)
    assert api_config().db_pool == PoolPolicy()


def test_a_pool_without_a_connection_for_routes_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Four connections are the background users'; routes need one more at least.
    monkeypatch.setenv("WANGGE_DB_POOL_SIZE", "4")
    with pytest.raises(ValidationError, match="db_pool_size"):
        DatabaseSettings()
