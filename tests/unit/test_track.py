"""The track read's pure rules: intervals, cursors, each fix's flags and its patrol."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geodata.track import (
    MAX_SPAN,
    Cursor,
    InvalidCursor,
    InvalidInterval,
    PatrolSpan,
    StoredFix,
    check_interval,
    fix_flags,
    track_of,
)

T0 = datetime(2020, 9, 7, 1, 0, tzinfo=UTC)
GRID = "610302001001001"


def fix(minutes: float, **overrides: object) -> StoredFix:
    values: dict[str, object] = {
        "event_id": str(uuid.uuid4()),
        "recorded_at": T0 + timedelta(minutes=minutes),
        "lon": 107.15,
        "lat": 34.37,
        "accuracy_m": 8.0,
        "grid_code": GRID,
        "in_assigned_grid": True,
        "flags": (),
    }
    return StoredFix(**(values | overrides))  # type: ignore[arg-type]


def patrol(start: float, end: float, grid: str = GRID, counted: bool = True) -> PatrolSpan:
    reason = "counted" if counted else "invalid:too_short"
    return PatrolSpan(
        grid, T0 + timedelta(minutes=start), T0 + timedelta(minutes=end), counted, counted, reason
    )


def test_an_interval_must_end_after_it_starts_and_span_at_most_a_month() -> None:
    check_interval(T0, T0 + MAX_SPAN)
    for end in (T0, T0 - timedelta(seconds=1), T0 + MAX_SPAN + timedelta(microseconds=1)):
        with pytest.raises(InvalidInterval):
            check_interval(T0, end)


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 1), max_value=datetime(8999, 12, 31), timezones=st.just(UTC)
    ),
    st.uuids(),
)
def test_a_cursor_reads_back_as_written(at: datetime, event_id: uuid.UUID) -> None:
    assert Cursor.decode(Cursor(at, event_id).encode()) == Cursor(at, event_id)


@pytest.mark.parametrize("text", ["", "x", "LTE6MDA", "MTox", "é", "A" * 97, "MTpnZw"])
def test_a_cursor_this_server_did_not_write_is_invalid_cursor(text: str) -> None:
    with pytest.raises(InvalidCursor):
        Cursor.decode(text)


def test_flags_come_in_a_fixed_order_with_outside_the_assigned_grid_added() -> None:
    flagged = fix(0, flags=("implausible_speed", "mocked", "low_accuracy"), in_assigned_grid=False)
    assert fix_flags(flagged) == (
        "low_accuracy",
        "implausible_speed",
        "mocked",
        "outside_assigned_grid",
    )
    assert fix_flags(fix(0, grid_code=None, in_assigned_grid=None)) == ("outside_assigned_grid",)
    assert fix_flags(fix(0)) == ()


def test_a_fix_belongs_to_the_patrol_of_its_grid_whose_span_holds_it() -> None:
    first, second = patrol(0, 20), patrol(60, 75, counted=False)
    other_grid = patrol(0, 90, grid="610302001001002")
    fixes = [fix(0), fix(20), fix(21), fix(60), fix(75.5)]
    found = [f.patrol for f in track_of(fixes, [second, other_grid, first], 100.0)]
    assert found == [first, first, None, second, None]


def test_a_fix_the_rule_cannot_use_belongs_to_no_patrol() -> None:
    unusable = [
        fix(5, accuracy_m=150.0),
        fix(5, in_assigned_grid=False),
        fix(5, grid_code=None, in_assigned_grid=None),
    ]
    assert [f.patrol for f in track_of(unusable, [patrol(0, 20)], 100.0)] == [None] * 3
    assert track_of([fix(5, accuracy_m=None)], [patrol(0, 20)], 100.0)[0].patrol is not None
