"""Where `wangge serve` and `wangge up` bind the API: the options, else ApiSettings."""

import pytest

from wangge.commands.run import bind_address
from wangge.settings import ApiSettings


@pytest.fixture(autouse=True)
def _no_env_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """A .env in the working directory must not decide the test."""
    monkeypatch.setitem(ApiSettings.model_config, "env_file", None)
    monkeypatch.delenv("WANGGE_API_HOST", raising=False)
    monkeypatch.delenv("WANGGE_API_PORT", raising=False)


def test_without_options_or_settings_the_api_binds_to_localhost_8000() -> None:
    assert bind_address(None, None) == ("127.0.0.1", 8000)


def test_the_settings_choose_the_address_and_the_options_win_over_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WANGGE_API_HOST", "0.0.0.0")
    monkeypatch.setenv("WANGGE_API_PORT", "9001")

    assert bind_address(None, None) == ("0.0.0.0", 9001)
    assert bind_address("127.0.0.2", None) == ("127.0.0.2", 9001)
    assert bind_address(None, 0) == ("0.0.0.0", 0)  # 0 is a port (any free one), not "unset"
