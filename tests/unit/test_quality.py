"""Fix quality flags: poor accuracy and impossible jumps are kept but flagged."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from geodata.quality import (
    IMPLAUSIBLE_SPEED,
    LOW_ACCURACY,
    Fix,
    haversine_m,
    implied_speed_kmh,
    quality_flags,
)

T0 = datetime(2020, 9, 7, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
HERE = Fix(T0, 107.15, 34.36)


def test_accuracy_of_exactly_100_m_is_fine_and_101_m_is_flagged() -> None:
    assert quality_flags(100.0, HERE, None) == []
    assert quality_flags(101.0, HERE, None) == [LOW_ACCURACY]
    assert quality_flags(None, HERE, None) == []


def test_one_degree_of_latitude_is_about_111_km() -> None:
    assert abs(haversine_m(HERE, Fix(T0, 107.15, 35.36)) - 111_195) < 50


def test_a_10_km_jump_in_one_minute_is_flagged_and_a_walk_is_not() -> None:
    jump = Fix(T0 + timedelta(minutes=1), 107.15, 34.36 + 10_000 / 111_195)
    walk = Fix(T0 + timedelta(seconds=30), 107.15, 34.36 + 40 / 111_195)
    assert implied_speed_kmh(HERE, jump) > 500
    assert quality_flags(8.0, jump, HERE) == [IMPLAUSIBLE_SPEED]
    assert quality_flags(8.0, walk, HERE) == []


def test_a_second_fix_at_the_same_instant_elsewhere_is_flagged() -> None:
    assert quality_flags(None, Fix(T0, 107.16, 34.36), HERE) == [IMPLAUSIBLE_SPEED]
    assert quality_flags(None, Fix(T0, 107.15, 34.36), HERE) == []


@given(st.floats(min_value=1, max_value=86_400), st.floats(min_value=0, max_value=0.01))
def test_speed_does_not_depend_on_which_fix_came_first(seconds: float, dlat: float) -> None:
    later = Fix(T0 + timedelta(seconds=seconds), 107.15, 34.36 + dlat)
    assert abs(implied_speed_kmh(HERE, later) - implied_speed_kmh(later, HERE)) < 1e-9
