"""A coverage period: the days asked for, refused outside the weeks the domain supports."""

from datetime import date

import pytest

from geodata.coverage import EARLIEST_DAY, LATEST_DAY, CoveragePeriod, InvalidPeriod

TODAY = date(2026, 12, 4)


def test_by_default_a_period_is_the_week_ending_today() -> None:
    period = CoveragePeriod.of(None, None, TODAY)
    assert (period.first, period.last) == (date(2026, 11, 28), TODAY)


@pytest.mark.parametrize(
    ("first", "last"),
    [
        # `to=0` reads as 1970-01-01, and the week before it begins in 1969 (the fuzz test's
        # find: a 500 before this check).
        (None, date(1970, 1, 1)),
        (date(1969, 12, 31), date(1970, 1, 10)),
        (date(8999, 12, 20), date(8999, 12, 31)),
    ],
)
def test_a_period_outside_the_supported_weeks_is_refused(first: date | None, last: date) -> None:
    with pytest.raises(InvalidPeriod, match="a period lies within"):
        CoveragePeriod.of(first, last, TODAY)


def test_the_first_and_last_supported_days_are_a_period() -> None:
    assert CoveragePeriod.of(EARLIEST_DAY, EARLIEST_DAY, TODAY).first == EARLIEST_DAY
    assert CoveragePeriod.of(LATEST_DAY, LATEST_DAY, TODAY).last == LATEST_DAY
