"""The supported span of weeks and instants: whatever is accepted can be computed with.

Python's datetime ends at years 1 and 9999, and a week's end or a conversion to UTC near
either end overflows; so every accepted week has a start and an end in any time zone,
and every accepted instant converts to UTC and has an accepted week.
"""

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geodata.compliance.weeks import (
    EARLIEST,
    LATEST,
    MAX_YEAR,
    MIN_YEAR,
    IsoWeek,
    check_supported_time,
)

ZONES = [ZoneInfo("Asia/Shanghai"), ZoneInfo("Pacific/Kiritimati"), ZoneInfo("Etc/GMT+12")]
_OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


@pytest.mark.parametrize(
    "name", ["9999-W52", "0001-W01", "1969-W52", "9001-W01", "１９７０-W01", "2020-W37\n"]
)
def test_weeks_outside_the_span_or_not_in_ascii_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="week"):
        IsoWeek.parse(name)


@given(year=st.integers(MIN_YEAR, MAX_YEAR), week=st.integers(1, 53))
def test_every_accepted_week_has_a_start_and_an_end_in_any_zone(year: int, week: int) -> None:
    try:
        chosen = IsoWeek(year, week)
    except ValueError:
        assert week == 53  # only a year without a week 53
        return
    for tz in ZONES:
        assert chosen.start(tz) < chosen.end(tz)
        assert chosen.end(tz).astimezone(UTC) > chosen.start(tz).astimezone(UTC)
    assert IsoWeek.parse(str(chosen)) == chosen


@given(
    moment=st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30), timezones=_OFFSETS),
)
def test_an_accepted_instant_converts_to_utc_and_has_an_accepted_week(moment: datetime) -> None:
    try:
        check_supported_time(moment, "t")
    except ValueError:
        # Refused exactly when it lies outside the span, compared without converting.
        assert not EARLIEST <= moment < LATEST
        return
    assert EARLIEST <= moment.astimezone(UTC) < LATEST
    for tz in ZONES:
        week = IsoWeek.week_of(moment, tz)
        assert week.start(tz) <= moment < week.end(tz)


def test_the_ends_of_python_s_range_are_refused_without_overflowing() -> None:
    for moment in (
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-12))),
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
        datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC),
        LATEST,
    ):
        with pytest.raises(ValueError, match="as_of must be from"):
            check_supported_time(moment, "as_of")
    with pytest.raises(ValueError, match="aware"):
        check_supported_time(datetime(2020, 9, 7), "as_of")
    assert check_supported_time(EARLIEST) == EARLIEST
