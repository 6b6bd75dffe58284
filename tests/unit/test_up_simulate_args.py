"""`wangge up --simulate` turns its options into a `wangge simulate` run, refused up front."""

from datetime import UTC, datetime, timedelta

import pytest

from geodata.compliance import IsoWeek
from geodata.errors import WanggeError
from wangge.simulation import SimulationConfig
from wangge.simulation.cli import up_simulator_args


def test_without_a_week_the_last_complete_week_is_replayed_at_sixty_times_real_time() -> None:
    last_week = IsoWeek.week_of(
        datetime.now(UTC) - timedelta(days=7), SimulationConfig().compliance.tz
    )
    args = up_simulator_args(None, None, None, 2020, None)
    assert args == ["simulate", "--week", str(last_week), "--speed", "60", "--seed", "2020",
                    "--background"]  # fmt: skip


def test_a_given_week_speed_workers_and_rate_are_passed_through() -> None:
    args = up_simulator_args("2020-W37", "3600", 50.0, 7, 12)
    assert args[:5] == ["simulate", "--week", "2020-W37", "--speed", "3600"]
    assert args[5:] == ["--workers", "12", "--rate", "50.0", "--seed", "7", "--background"]


def test_live_streams_this_week_at_real_time_and_refuses_a_faster_speed() -> None:
    assert up_simulator_args("live", None, None, 2020, None)[:2] == ["simulate", "--seed"]
    with pytest.raises(WanggeError, match="real time"):
        up_simulator_args("live", "60", None, 2020, None)


@pytest.mark.parametrize(
    ("week", "speed", "workers"), [("2020-W99", None, None), (None, "fast", None), (None, None, 0)]
)
def test_a_bad_option_is_refused_before_anything_starts(
    week: str | None, speed: str | None, workers: int | None
) -> None:
    with pytest.raises(WanggeError):
        up_simulator_args(week, speed, None, 2020, workers)
