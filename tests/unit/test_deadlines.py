"""Working-time arithmetic and what a due moment does (geodata.deadlines)."""

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geodata.deadlines import (
    CITY_ZONE,
    Deadline,
    DeadlineTable,
    OnDue,
    Stage,
    Unit,
    WorkCalendar,
    default_table,
    on_due,
    stage_of,
)
from geodata.incidents import EscalationLevel, IncidentState, Status

# National Day 2020: 1-8 October off, Sunday 27 September and Saturday 10 October worked.
NATIONAL_DAY = frozenset(date(2020, 10, day) for day in range(1, 9))
MAKE_UP = frozenset({date(2020, 9, 27), date(2020, 10, 10)})
CALENDAR = WorkCalendar(holidays=NATIONAL_DAY, extra_workdays=MAKE_UP)


def local(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=CITY_ZONE)


def test_working_hours_within_a_day() -> None:
    assert CALENDAR.add_working_time(local(2020, 9, 7, 10, 0), timedelta(hours=2)) == local(
        2020, 9, 7, 12, 0
    )


def test_a_case_filed_at_17_59_counts_its_last_minute_then_the_next_morning() -> None:
    due = CALENDAR.add_working_time(local(2020, 9, 7, 17, 59), timedelta(hours=2))
    assert due == local(2020, 9, 8, 10, 59)


def test_a_case_filed_at_night_starts_counting_at_nine() -> None:
    due = CALENDAR.add_working_time(local(2020, 9, 7, 23, 30), timedelta(hours=2))
    assert due == local(2020, 9, 8, 11, 0)
    early = CALENDAR.add_working_time(local(2020, 9, 8, 3, 0), timedelta(hours=2))
    assert early == due


def test_the_weekend_does_not_count() -> None:
    friday = local(2020, 9, 11, 17, 0)
    assert CALENDAR.add_working_time(friday, timedelta(hours=2)) == local(2020, 9, 14, 10, 0)


def test_the_holiday_does_not_count_and_the_make_up_saturday_does() -> None:
    # Filed on the last working day before National Day: the next is Friday 9 October.
    eve = local(2020, 9, 30, 17, 0)
    assert CALENDAR.add_working_time(eve, timedelta(hours=2)) == local(2020, 10, 9, 10, 0)
    friday = local(2020, 10, 9, 17, 30)
    assert CALENDAR.add_working_time(friday, timedelta(hours=1)) == local(2020, 10, 10, 9, 30)
    # The make-up Sunday before it is worked too.
    assert CALENDAR.is_working_time(local(2020, 9, 27, 10, 0))
    assert not CALENDAR.is_working_time(local(2020, 10, 5, 10, 0))


def test_a_due_moment_on_the_close_of_day_stays_there() -> None:
    due = CALENDAR.add_working_time(local(2020, 9, 7, 16, 0), timedelta(hours=2))
    assert due == local(2020, 9, 7, 18, 0)


def test_working_days_are_days_of_working_hours_from_the_filing_minute() -> None:
    table = default_table(NATIONAL_DAY, MAKE_UP)
    friday = local(2020, 9, 11, 17, 59)
    assert table.due_at("environment.garbage", Status.DISPATCHED, friday) == local(
        2020, 9, 16, 17, 59
    )


def test_urgent_categories_count_clock_hours_at_night() -> None:
    table = default_table(NATIONAL_DAY, MAKE_UP)
    night = local(2020, 10, 3, 2, 0)
    assert table.due_at("emergency.gas_leak", Status.REPORTED, night) == local(2020, 10, 3, 2, 30)
    assert table.due_at("public_facilities.manhole_cover", Status.IN_PROGRESS, night) == local(
        2020, 10, 3, 6, 0
    )


def test_the_most_specific_row_wins_and_final_cases_fall_due_never() -> None:
    table = DeadlineTable(
        {
            ("*", Stage.HANDLE): Deadline(3, Unit.WORKING_DAYS),
            ("environment", Stage.HANDLE): Deadline(2, Unit.WORKING_DAYS),
            ("environment.garbage", Stage.HANDLE): Deadline(4, Unit.HOURS),
        },
        CALENDAR,
    )
    assert table.deadline_of("environment.garbage", Stage.HANDLE) == Deadline(4, Unit.HOURS)
    assert table.deadline_of("environment.dead_animal", Stage.HANDLE) == Deadline(
        2, Unit.WORKING_DAYS
    )
    assert table.deadline_of("other.unclassified", Stage.HANDLE) == Deadline(3, Unit.WORKING_DAYS)
    assert table.deadline_of("other.unclassified", Stage.VERIFY) is None
    assert table.due_at("environment.garbage", Status.CLOSED, local(2020, 9, 7, 9, 0)) is None
    assert stage_of(Status.ESCALATED) is Stage.DISPATCH
    assert stage_of(Status.RESOLVED) is Stage.VERIFY


def test_aware_datetimes_only_and_positive_deadlines() -> None:
    with pytest.raises(ValueError, match="aware"):
        CALENDAR.is_working_time(datetime(2020, 9, 7, 10, 0))
    with pytest.raises(ValueError, match="more than 0"):
        Deadline(0, Unit.HOURS)


def _state(
    status: Status, escalated_to: str | None, community: str | None = "610302001001"
) -> IncidentState:
    return IncidentState(
        status=status,
        version=3,
        assignee=None,
        grid_code="610302001001003" if community else None,
        community_code=community,
        escalated_to=escalated_to,
        source="worker",
        reporter_id="W00001",
    )


def test_the_whistle_climbs_worker_community_street_district_then_only_marks() -> None:
    ladder = [
        (None, (OnDue.ESCALATE, EscalationLevel.COMMUNITY)),
        ("610302001001", (OnDue.ESCALATE, EscalationLevel.STREET)),
        ("610302001", (OnDue.ESCALATE, EscalationLevel.DISTRICT)),
        ("610302", (OnDue.MARK, None)),
    ]
    for escalated_to, expected in ladder:
        assert on_due(_state(Status.IN_PROGRESS, escalated_to), overdue=False) == expected
    assert on_due(_state(Status.ESCALATED, "610302"), overdue=True) == (OnDue.NOTHING, None)
    assert on_due(_state(Status.RESOLVED, None), overdue=False) == (OnDue.MARK, None)
    assert on_due(_state(Status.RESOLVED, None), overdue=True) == (OnDue.NOTHING, None)
    assert on_due(_state(Status.REPORTED, None, None), overdue=False) == (OnDue.MARK, None)
    assert on_due(_state(Status.CLOSED, None), overdue=False) == (OnDue.NOTHING, None)


instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
)
amounts = st.integers(min_value=0, max_value=60 * 24 * 10).map(lambda m: timedelta(minutes=m))


@given(instants, amounts)
def test_a_due_moment_is_never_before_the_start_and_counts_exactly_the_working_time(
    start: datetime, amount: timedelta
) -> None:
    due = CALENDAR.add_working_time(start, amount)
    assert due >= start
    # Working minutes between start and due, counted minute by minute at a coarse step.
    if amount and amount <= timedelta(hours=30):
        step = timedelta(minutes=1)
        counted = timedelta(0)
        moment = start
        while moment < due:
            if CALENDAR.is_working_time(moment):
                counted += step
            moment += step
        assert abs(counted - amount) <= timedelta(minutes=2)
        # The due moment itself closes a working minute.
        assert CALENDAR.is_working_time(due - step)


@given(instants, amounts, amounts)
def test_adding_in_two_steps_is_adding_once(
    start: datetime, first: timedelta, second: timedelta
) -> None:
    once = CALENDAR.add_working_time(start, first + second)
    if first:  # from a due moment on the close of day the next count starts next morning
        assert CALENDAR.add_working_time(CALENDAR.add_working_time(start, first), second) == once
