"""Both adapters' configs come from the same settings, so they check grids alike."""

import pytest

from geodata.snapshot_policy import SnapshotPolicy
from wangge.adapter_configs import api_config, runner_config


def test_both_adapters_check_the_grid_snapshot_as_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WANGGE_GRID_CHECK_INTERVAL_S", "7.5")
    assert api_config().grid_snapshot.check_interval_s == 7.5
    assert runner_config().grid_snapshot.check_interval_s == 7.5


def test_without_the_setting_both_use_the_default_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANGGE_GRID_CHECK_INTERVAL_S", raising=False)
    assert api_config().grid_snapshot == runner_config().grid_snapshot == SnapshotPolicy()
