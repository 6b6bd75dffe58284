"""The evaluation's pure rules: the period's bounds, p90, a case walked, the CSV."""

import csv
import io
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geodata.evaluation import (
    CaseEvent,
    CaseHistory,
    InvalidPeriod,
    Period,
    evaluate,
    p90,
    period_of,
)
from geodata.evaluation_csv import evaluation_csv
from geodata.incidents import Status

TODAY = date(2020, 10, 15)


def test_a_period_runs_from_local_midnight_to_the_midnight_after_its_last_day() -> None:
    period = period_of(date(2020, 10, 1), date(2020, 10, 31), TODAY)
    assert period.start == datetime(2020, 9, 30, 16, tzinfo=UTC)
    assert period.end == datetime(2020, 10, 31, 16, tzinfo=UTC)
    assert period.holds(period.start)
    assert not period.holds(period.end)
    assert period.holds(period.end - timedelta(microseconds=1))


def test_defaults_are_a_month() -> None:
    assert period_of(None, None, TODAY) == Period(date(2020, 10, 1), TODAY)
    assert period_of(date(2020, 12, 5), None, TODAY) == Period(
        date(2020, 12, 5), date(2020, 12, 31)
    )
    assert period_of(date(2020, 2, 1), None, TODAY).last == date(2020, 2, 29)
    assert period_of(None, date(2020, 11, 3), TODAY).first == date(2020, 11, 1)


@pytest.mark.parametrize(
    ("first", "last"),
    [
        (date(2020, 10, 2), date(2020, 10, 1)),
        (date(2020, 1, 1), date(2021, 1, 1)),
        (date(1969, 12, 31), date(1970, 1, 1)),
        (date(9000, 1, 1), date(9000, 1, 2)),
    ],
)
def test_a_period_backwards_longer_than_a_year_or_out_of_range_is_refused(
    first: date, last: date
) -> None:
    with pytest.raises(InvalidPeriod) as caught:
        period_of(first, last, TODAY)
    assert caught.value.code == "invalid_period"


def test_a_leap_year_is_one_period() -> None:
    assert period_of(date(2020, 1, 1), date(2020, 12, 31), TODAY).last == date(2020, 12, 31)


@given(st.lists(st.floats(min_value=0, max_value=1e7), min_size=1, max_size=60))
def test_p90_is_the_smallest_value_at_least_nine_tenths_do_not_exceed(values: list[float]) -> None:
    result = p90(values)
    assert result in values
    assert sum(v <= result for v in values) >= 0.9 * len(values)
    assert sum(v < result for v in values) < 0.9 * len(values)


def _at(hours: float) -> datetime:
    return datetime(2020, 10, 10, tzinfo=UTC) + timedelta(hours=hours)


def _case(*events: tuple[str, Status, str | None, str, float]) -> CaseHistory:
    return CaseHistory(
        uuid.uuid4(),
        "environment.garbage",
        "worker",
        "W00001",
        "610302001001001",
        _at(0),
        tuple(CaseEvent(a, s, who, role, _at(h)) for a, s, who, role, h in events),
    )


OCTOBER = period_of(date(2020, 10, 1), date(2020, 10, 31), TODAY)


def test_a_reopened_case_overdue_once_is_closed_late_and_reworked() -> None:
    case = _case(
        ("dispatch", Status.DISPATCHED, "W00002", "supervisor", 1),
        ("start", Status.IN_PROGRESS, "W00002", "worker", 2),
        ("resolve", Status.RESOLVED, "W00002", "worker", 4),
        ("reopen", Status.IN_PROGRESS, "W00002", "supervisor", 5),
        ("resolve", Status.RESOLVED, "W00002", "worker", 8),
        ("overdue", Status.RESOLVED, "W00002", "system", 20),
        ("close", Status.CLOSED, "W00002", "supervisor", 30),
    )
    result = evaluate([case], OCTOBER, "worker", "", {"W00002": "李四"})
    total = result.total
    assert (total.reported, total.dispatched, total.closed, total.closed_on_time) == (1, 1, 1, 0)
    assert (total.overdue, total.reopened, total.reopen_rate, total.escalations) == (1, 1, 1.0, 0)
    assert total.stages["dispatch"].count == 1
    assert total.stages["dispatch"].mean_s == 3600
    # Handle: 1 h to 4 h, then 5 h to 8 h; verify: 4 h to 5 h, then 8 h to 30 h.
    assert total.stages["handle"].count == 2
    assert total.stages["handle"].mean_s == 3 * 3600
    assert total.stages["verify"].count == 2
    assert total.stages["verify"].p90_s == 22 * 3600
    assert total.stages["total"].mean_s == 30 * 3600
    worker = {item.code: item for item in result.items}
    # The reporter's own report; the holder's dispatch, close and stays (not the dispatch's).
    assert worker["W00001"].reported == 1
    assert worker["W00001"].closed == 0
    assert worker["W00002"].name == "李四"
    assert (worker["W00002"].dispatched, worker["W00002"].closed) == (1, 1)
    assert worker["W00002"].stages["dispatch"].count == 0


def test_an_escalation_by_the_deadlines_counts_for_the_worker_who_held_it() -> None:
    case = _case(
        ("dispatch", Status.DISPATCHED, "W00002", "supervisor", 1),
        ("escalate", Status.ESCALATED, None, "system", 9),
        ("dispatch", Status.DISPATCHED, "W00003", "supervisor", 10),
        ("cancel", Status.CANCELLED, None, "supervisor", 11),
    )
    result = evaluate([case], OCTOBER, "worker", "", {})
    items = {item.code: item for item in result.items}
    assert items["W00002"].escalations == items["W00002"].escalations_by_deadlines == 1
    assert items["W00002"].overdue == 1
    assert items["W00003"].overdue == 0
    # A stay ended by a cancellation is not timed; the case is dispatched once in all.
    assert items["W00003"].stages["handle"].count == 0
    assert result.total.dispatched == 1
    assert result.total.on_time_rate is None


def test_a_locker_task_returned_by_its_worker_is_closed_on_time() -> None:
    case = _case(
        ("pick_up", Status.IN_PROGRESS, "W00002", "worker", 1),
        ("return", Status.CLOSED, "W00002", "worker", 6),
    )
    total = evaluate([case], OCTOBER, "worker", "", {}).total
    assert (total.closed, total.closed_on_time, total.on_time_rate) == (1, 1, 1.0)
    assert total.stages["total"].mean_s == 6 * 3600


def test_only_what_happened_in_the_period_counts() -> None:
    case = _case(("dispatch", Status.DISPATCHED, "W00002", "supervisor", 24 * 30))
    november = period_of(date(2020, 11, 1), date(2020, 11, 30), TODAY)
    assert evaluate([case], OCTOBER, "grid", "", {}).total.dispatched == 0
    assert evaluate([case], november, "grid", "", {}).total.reported == 0
    assert evaluate([case], november, "grid", "", {}).total.dispatched == 1


def test_the_csv_has_the_total_first_and_a_column_per_source_and_category() -> None:
    case = _case(("dispatch", Status.DISPATCHED, "W00002", "supervisor", 1))
    result = evaluate([case], OCTOBER, "grid", "610302", {"610302001001001": "=1+1 网格"}, "渭滨区")
    text = evaluation_csv(result)
    assert text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))
    assert [row["code"] for row in rows] == ["610302", "610302001001001"]
    assert rows[0]["level"] == "district"
    assert rows[0]["name"] == "渭滨区"
    assert rows[1]["name"] == "'=1+1 网格"
    assert rows[1]["source:worker"] == "1"
    assert rows[1]["category:environment.garbage"] == "1"
    assert rows[0]["dispatch_mean_s"] == "3600"
    assert rows[0]["on_time_rate"] == ""
