"""`wangge up --simulate` opens the map on the replayed week, as of the replay's clock."""

import pytest

from wangge.adapter_configs import api_config
from wangge.commands.run import _up_line
from wangge.simulation.cli import map_path, replay_intake_env, up_simulator_args


def test_the_printed_map_address_carries_the_replayed_week() -> None:
    args = up_simulator_args("2020-W37", None, None, 2020, None)
    assert map_path(args) == "/map?week=2020-W37"
    line = _up_line("http://127.0.0.1:8000", None, map_path(args))
    assert "http://127.0.0.1:8000/map?week=2020-W37  sign in" in line


def test_a_live_stream_opens_the_current_week() -> None:
    args = up_simulator_args("live", None, None, 2020, None)
    assert map_path(args) == "/map"
    assert replay_intake_env(args) == {}


def test_a_replay_puts_the_api_on_the_engines_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    env = replay_intake_env(up_simulator_args("2020-W37", None, None, 2020, None))
    assert env["WANGGE_COMPLIANCE_CLOCK"] == "engine"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert api_config().compliance_clock == "engine"
    monkeypatch.delenv("WANGGE_COMPLIANCE_CLOCK")
    assert api_config().compliance_clock == "wall"
