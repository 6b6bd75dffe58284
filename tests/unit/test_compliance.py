"""Patrol compliance: patrols from check-ins, counted patrols, requirements and statuses."""

import itertools
import random
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, timezone
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geodata.compliance import (
    CheckinRecord,
    ComplianceConfig,
    ComplianceKey,
    IsoWeek,
    StatusChange,
    WeekResult,
    build_patrols,
    checkin_window,
    days_assigned,
    evaluate_week,
    is_usable,
    is_week_final,
    presence_flag,
    remaining_capacity,
    required_patrols,
    status_as_of,
    status_changes,
    valid_at,
)
from geodata.dataset.layers import LOCAL_TZ
from geodata.events import CheckInAssignment, ComplianceChange, ComplianceStatus
from geodata.staffing import AssignmentPeriod
from tests.reference_compliance import reference_week

CONFIG = ComplianceConfig()
TZ = LOCAL_TZ
WEEK = IsoWeek.parse("2020-W37")  # Monday 2020-09-07 to Sunday 2020-09-13
MONDAY = datetime(2020, 9, 7, tzinfo=TZ)
WORKER = "W00001"
OTHER_WORKER = "W00002"
GRID = "610302001001001"
OTHER_GRID = "610302001001002"
ALWAYS = [AssignmentPeriod(WORKER, GRID, datetime(2020, 1, 1, tzinfo=TZ), None)]
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)
DAY = timedelta(days=1)

_ids = itertools.count(1)


def day_at(day: int, hour: int = 9, minute: int = 0) -> datetime:
    """Local time on the `day`-th day of WEEK (0 is Monday)."""
    return MONDAY + timedelta(days=day, hours=hour, minutes=minute)


def checkin(
    at: datetime,
    *,
    worker: str = WORKER,
    grid: str | None = GRID,
    accuracy: float | None = 8.0,
) -> CheckinRecord:
    return CheckinRecord(UUID(int=next(_ids)), worker, grid, at, accuracy)


def walk(
    start: datetime, *offsets: timedelta, worker: str = WORKER, grid: str | None = GRID
) -> list[CheckinRecord]:
    """Check-ins at `start` and at each offset after it."""
    times = [start, *(start + offset for offset in offsets)]
    return [checkin(t, worker=worker, grid=grid) for t in times]


def good_walk(start: datetime, *, worker: str = WORKER, grid: str = GRID) -> list[CheckinRecord]:
    """A valid patrol: three check-ins over fifteen minutes."""
    return walk(start, 5 * MINUTE, 15 * MINUTE, worker=worker, grid=grid)


def evaluate(
    checkins: list[CheckinRecord],
    *,
    assignments: list[AssignmentPeriod] = ALWAYS,
    grid: str = GRID,
    week: IsoWeek = WEEK,
    as_of: datetime | None = None,
    config: ComplianceConfig = CONFIG,
) -> WeekResult:
    return evaluate_week(
        checkins,
        assignments,
        worker_id=WORKER,
        grid_code=grid,
        week=week,
        as_of=as_of or week.end(TZ) + 7 * DAY,
        config=config,
    )


# --- weeks ----------------------------------------------------------------------------


def test_week_name_round_trips_and_bounds_are_local_mondays() -> None:
    assert str(WEEK) == "2020-W37"
    assert IsoWeek.parse("2021-W01") == IsoWeek(2021, 1)
    assert WEEK.start(TZ) == MONDAY
    assert WEEK.end(TZ) == MONDAY + 7 * DAY
    assert WEEK.days() == [date(2020, 9, 7) + i * DAY for i in range(7)]
    assert WEEK.next() == IsoWeek(2020, 38)
    assert IsoWeek(2021, 1).previous() == IsoWeek(2020, 53)


@pytest.mark.parametrize("name", ["2020-37", "2020-W7", "2021-W53", "2020-W00", " 2020-W37"])
def test_bad_week_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="week"):
        IsoWeek.parse(name)


def test_sunday_23_59_and_monday_00_00_local_time_fall_in_different_weeks() -> None:
    sunday = datetime(2020, 9, 13, 23, 59, tzinfo=TZ)
    monday = datetime(2020, 9, 14, 0, 0, tzinfo=TZ)
    assert IsoWeek.week_of(sunday, TZ) == WEEK
    assert IsoWeek.week_of(monday, TZ) == IsoWeek(2020, 38)


def test_utc_sunday_17_00_that_is_shanghai_monday_01_00_belongs_to_the_monday() -> None:
    t = datetime(2020, 9, 13, 17, 0, tzinfo=UTC)
    assert IsoWeek.week_of(t, TZ) == IsoWeek(2020, 38)
    patrol = build_patrols(good_walk(t), CONFIG)[0]
    assert (patrol.day, patrol.week) == (date(2020, 9, 14), IsoWeek(2020, 38))
    assert patrol.start.tzinfo == TZ
    assert evaluate(good_walk(t), week=IsoWeek(2020, 38)).counted == 1
    assert evaluate(good_walk(t)).counted == 0


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        IsoWeek.week_of(datetime(2020, 9, 7), TZ)
    with pytest.raises(ValueError, match="aware"):
        checkin(datetime(2020, 9, 7, 9))


# --- patrols --------------------------------------------------------------------------


def test_gap_of_exactly_30_minutes_continues_the_patrol() -> None:
    patrols = build_patrols(walk(day_at(0), 30 * MINUTE, 60 * MINUTE), CONFIG)
    assert len(patrols) == 1
    assert patrols[0].checkin_count == 3
    assert patrols[0].duration == 60 * MINUTE


def test_gap_of_30_minutes_and_1_second_starts_a_new_patrol() -> None:
    patrols = build_patrols(walk(day_at(0), 30 * MINUTE + SECOND), CONFIG)
    assert [p.checkin_count for p in patrols] == [1, 1]
    assert patrols[1].start == day_at(0) + 30 * MINUTE + SECOND


def test_patrol_of_9_min_59_s_is_too_short_and_10_min_is_valid() -> None:
    short = build_patrols(walk(day_at(0), MINUTE, 9 * MINUTE + 59 * SECOND), CONFIG)[0]
    assert (short.valid, short.invalid_reason, short.count_reason) == (
        False,
        "too_short",
        "invalid",
    )
    enough = build_patrols(walk(day_at(0), MINUTE, 10 * MINUTE), CONFIG)[0]
    assert (enough.valid, enough.invalid_reason, enough.counted) == (True, None, True)


def test_two_checkins_are_too_few() -> None:
    patrol = build_patrols(walk(day_at(0), 25 * MINUTE), CONFIG)[0]
    assert patrol.invalid_reason == "too_few_checkins"
    assert not patrol.counted


def test_identical_timestamps_from_different_events_are_separate_checkins() -> None:
    patrol = build_patrols(walk(day_at(0), 10 * MINUTE, 10 * MINUTE), CONFIG)[0]
    assert (patrol.checkin_count, patrol.valid) == (3, True)


def test_three_walks_on_one_day_count_once() -> None:
    checkins = good_walk(day_at(0, 8)) + good_walk(day_at(0, 10)) + good_walk(day_at(0, 15))
    patrols = build_patrols(checkins, CONFIG)
    assert [p.count_reason for p in patrols] == [
        "counted",
        "already_counted_today",
        "already_counted_today",
    ]
    assert all(p.valid for p in patrols)
    result = evaluate(checkins)
    assert (result.counted, result.counted_days) == (1, [date(2020, 9, 7)])


def test_earliest_valid_walk_of_the_day_is_the_counted_one() -> None:
    too_short = walk(day_at(0, 8), MINUTE, 2 * MINUTE)
    patrols = build_patrols(good_walk(day_at(0, 17)) + too_short + good_walk(day_at(0, 12)), CONFIG)
    assert [(p.start.hour, p.count_reason) for p in patrols] == [
        (8, "invalid"),
        (12, "counted"),
        (17, "already_counted_today"),
    ]


def test_more_than_one_counted_per_day_when_configured() -> None:
    config = ComplianceConfig(max_counted_per_day=2)
    checkins = good_walk(day_at(0, 8)) + good_walk(day_at(0, 10)) + good_walk(day_at(0, 15))
    assert [p.counted for p in build_patrols(checkins, config)] == [True, True, False]


def test_patrol_across_midnight_belongs_to_its_first_day() -> None:
    checkins = walk(day_at(1, 23, 50), 10 * MINUTE, 20 * MINUTE)
    patrol = build_patrols(checkins, CONFIG)[0]
    assert patrol.day == date(2020, 9, 8)
    assert patrol.end.date() == date(2020, 9, 9)
    # Wednesday still has its own patrol to count.
    both = build_patrols(checkins + good_walk(day_at(2, 9)), CONFIG)
    assert [p.counted for p in both] == [True, True]


def test_patrol_across_the_week_boundary_belongs_to_the_week_of_its_first_checkin() -> None:
    checkins = walk(day_at(6, 23, 55), 5 * MINUTE, 15 * MINUTE)  # Sunday 23:55 to 00:10
    assert evaluate(checkins).counted == 1
    assert evaluate(checkins, week=WEEK.next()).counted == 0
    # And a check-in just after Monday 00:00 that continues it starts no patrol there.
    assert evaluate(checkins, week=WEEK.next()).patrols == ()


def test_patrol_begun_before_the_week_does_not_count_in_it() -> None:
    checkins = walk(MONDAY - 20 * MINUTE, 20 * MINUTE, 40 * MINUTE)
    assert evaluate(checkins).patrols == ()
    assert evaluate(checkins, week=WEEK.previous()).counted == 1


def test_patrol_begun_just_before_the_week_end_is_judged_on_checkins_after_it() -> None:
    # Default rule: validity settles with the 3rd check-in, at most 2 gaps (60 min) in.
    third_in_time = walk(day_at(6, 23, 59), 30 * MINUTE, 60 * MINUTE)
    assert CONFIG.patrol_horizon == 60 * MINUTE
    assert evaluate(third_in_time).counted == 1
    # Two check-ins suffice here, but 50 minutes must pass: settled 50 + 30 min in.
    config = ComplianceConfig(min_checkins=2, min_duration=50 * MINUTE)
    assert config.patrol_horizon == 80 * MINUTE
    late_end = walk(day_at(6, 23, 59), 29 * MINUTE, 58 * MINUTE)
    result = evaluate_week(
        late_end,
        ALWAYS,
        worker_id=WORKER,
        grid_code=GRID,
        week=WEEK,
        as_of=day_at(9),
        config=config,
    )
    assert (result.counted, result.patrols[0].checkin_count) == (1, 3)


def test_patrols_are_per_worker_and_grid() -> None:
    with pytest.raises(ValueError, match="per worker and grid"):
        build_patrols(good_walk(day_at(0)) + good_walk(day_at(1), grid=OTHER_GRID), CONFIG)
    assert build_patrols([], CONFIG) == []


def test_duplicates_collapse_but_different_contents_under_one_id_are_refused() -> None:
    checkins = good_walk(day_at(0))
    assert build_patrols(checkins + checkins, CONFIG) == build_patrols(checkins, CONFIG)
    with pytest.raises(ValueError, match="different contents"):
        build_patrols([*checkins, replace(checkins[0], accuracy_m=50.0)], CONFIG)


def test_an_id_reused_at_another_time_is_another_checkin() -> None:
    # As stored: patrol_checkins is keyed by (event_id, recorded_at) (docs/HISTORY.md).
    checkins = good_walk(day_at(0))
    reused = replace(checkins[0], recorded_at=checkins[-1].recorded_at + timedelta(minutes=1))
    [patrol] = build_patrols([*checkins, reused], CONFIG)
    assert patrol.checkin_count == len(checkins) + 1


# --- usable check-ins -----------------------------------------------------------------


def test_accuracy_of_101_m_is_ignored_and_100_m_kept() -> None:
    assert is_usable(checkin(day_at(0), accuracy=100.0), ALWAYS, CONFIG)
    assert is_usable(checkin(day_at(0), accuracy=None), ALWAYS, CONFIG)
    assert not is_usable(checkin(day_at(0), accuracy=101.0), ALWAYS, CONFIG)
    inaccurate_middle = [
        checkin(day_at(0)),
        checkin(day_at(0, 9, 6), accuracy=101.0),
        checkin(day_at(0, 9, 12)),
    ]
    assert evaluate(inaccurate_middle).patrols[0].invalid_reason == "too_few_checkins"
    inaccurate_middle[1] = checkin(day_at(0, 9, 6), accuracy=100.0)
    assert evaluate(inaccurate_middle).counted == 1


def test_checkin_outside_the_assigned_grid_is_ignored() -> None:
    elsewhere = checkin(day_at(0), grid=OTHER_GRID)
    assert not is_usable(elsewhere, ALWAYS, CONFIG)
    assert not is_usable(checkin(day_at(0), grid=None), ALWAYS, CONFIG)
    mixed = [checkin(day_at(0)), elsewhere, checkin(day_at(0, 9, 12))]
    assert evaluate(mixed).patrols[0].checkin_count == 2
    # Not assigned there, so nothing counts there either.
    assert evaluate(good_walk(day_at(0), grid=OTHER_GRID), grid=OTHER_GRID).patrols == ()


# --- proof of presence ---------------------------------------------------------------


def flagged(at: datetime, *, mock: bool = False, fast: bool = False) -> CheckinRecord:
    return replace(checkin(at), mock=mock, implausible_speed=fast)


def test_a_mocked_fix_before_the_walk_is_proven_voids_it_and_is_named() -> None:
    walk_ = [checkin(day_at(0)), flagged(day_at(0, 9, 5), mock=True), checkin(day_at(0, 9, 15))]
    (patrol,) = evaluate(walk_).patrols
    assert (patrol.invalid_reason, patrol.count_reason) == ("mocked_location", "invalid")
    assert patrol.checkin_count == 3  # the flagged fix is part of the walk, not dropped
    assert presence_flag(walk_[1], CONFIG) == "mocked_location"
    assert presence_flag(walk_[0], CONFIG) is None


def test_an_impossible_speed_voids_the_walk_and_mock_is_named_first() -> None:
    fast = [checkin(day_at(0)), flagged(day_at(0, 9, 5), fast=True), checkin(day_at(0, 9, 15))]
    assert evaluate(fast).patrols[0].invalid_reason == "implausible_speed"
    both = [flagged(day_at(0), fast=True), flagged(day_at(0, 9, 5), mock=True), fast[2]]
    assert evaluate(both).patrols[0].invalid_reason == "mocked_location"
    assert presence_flag(flagged(day_at(0), mock=True, fast=True), CONFIG) == "mocked_location"


def test_a_flag_after_the_walk_became_valid_changes_nothing() -> None:
    # Valid at 9:15 (3 fixes, 15 minutes); what the phone says at 9:20 comes too late.
    later = [*good_walk(day_at(0)), flagged(day_at(0, 9, 20), mock=True, fast=True)]
    (patrol,) = evaluate(later).patrols
    assert (patrol.counted, patrol.checkin_count) == (True, 4)
    usable = [c for c in later if is_usable(c, ALWAYS, CONFIG)]
    assert valid_at(patrol, usable, CONFIG) == day_at(0, 9, 15)


def test_too_few_or_too_short_is_reported_before_a_flag() -> None:
    short = [flagged(day_at(0), mock=True), checkin(day_at(0, 9, 5)), checkin(day_at(0, 9, 9))]
    assert evaluate(short).patrols[0].invalid_reason == "too_short"
    assert evaluate(short[:2]).patrols[0].invalid_reason == "too_few_checkins"


def test_each_flag_can_be_turned_off() -> None:
    walk_ = [
        checkin(day_at(0)),
        flagged(day_at(0, 9, 5), mock=True, fast=True),
        checkin(day_at(0, 9, 15)),
    ]
    lenient = replace(CONFIG, refuse_mocked=False)
    assert evaluate(walk_, config=lenient).patrols[0].invalid_reason == "implausible_speed"
    neither = replace(lenient, refuse_implausible_speed=False)
    assert evaluate(walk_, config=neither).counted == 1


def test_checkin_before_or_after_the_assignment_is_ignored() -> None:
    period = [AssignmentPeriod(WORKER, GRID, day_at(0, 9, 5), day_at(0, 10))]
    assert not is_usable(checkin(day_at(0, 9)), period, CONFIG)
    assert is_usable(checkin(day_at(0, 9, 5)), period, CONFIG)
    assert not is_usable(checkin(day_at(0, 10)), period, CONFIG)
    assert not is_usable(checkin(day_at(0, 9, 30), worker=OTHER_WORKER), period, CONFIG)


def test_other_workers_checkins_are_ignored() -> None:
    both = [*ALWAYS, AssignmentPeriod(OTHER_WORKER, GRID, MONDAY, None)]
    assert evaluate(good_walk(day_at(0), worker=OTHER_WORKER), assignments=both).patrols == ()


# --- requirement ----------------------------------------------------------------------


def test_worker_assigned_the_whole_week_owes_3() -> None:
    assert days_assigned(ALWAYS, WEEK, CONFIG) == 7
    assert required_patrols(ALWAYS, WEEK, CONFIG) == 3


def test_worker_reassigned_on_wednesday_owes_ceil_of_3_days_over_7_in_each_grid() -> None:
    wednesday = day_at(2, 0)
    before = [AssignmentPeriod(WORKER, GRID, MONDAY - 30 * DAY, wednesday)]
    after = [AssignmentPeriod(WORKER, OTHER_GRID, wednesday, None)]
    assert (days_assigned(before, WEEK, CONFIG), required_patrols(before, WEEK, CONFIG)) == (2, 1)
    assert (days_assigned(after, WEEK, CONFIG), required_patrols(after, WEEK, CONFIG)) == (5, 3)
    result = evaluate(good_walk(day_at(0)), assignments=before + after)
    assert (result.required, result.status) == (1, "met")


def test_day_of_a_mid_day_reassignment_is_owed_to_neither_grid() -> None:
    change = day_at(2, 10)
    before = [AssignmentPeriod(WORKER, GRID, MONDAY - 30 * DAY, change)]
    after = [AssignmentPeriod(WORKER, OTHER_GRID, change, None)]
    assert days_assigned(before, WEEK, CONFIG) == 2  # Monday, Tuesday
    assert days_assigned(after, WEEK, CONFIG) == 4  # Thursday to Sunday
    assert required_patrols(after, WEEK, CONFIG) == 2
    # A patrol on the changeover day still counts where it was walked.
    walked = good_walk(day_at(2, 11), grid=OTHER_GRID)
    result = evaluate(walked, assignments=before + after, grid=OTHER_GRID)
    assert result.counted == 1


def test_back_to_back_and_overlapping_periods_join() -> None:
    periods = [
        AssignmentPeriod(WORKER, GRID, MONDAY, day_at(1, 12)),
        AssignmentPeriod(WORKER, GRID, day_at(1, 12), day_at(3, 6)),
        AssignmentPeriod(WORKER, GRID, day_at(3, 1), day_at(5)),
    ]
    assert days_assigned(periods, WEEK, CONFIG) == 5  # Monday to Friday
    with pytest.raises(ValueError, match="one worker in one grid"):
        days_assigned([*periods, AssignmentPeriod("W9", GRID, MONDAY, None)], WEEK, CONFIG)


def test_worker_never_assigned_in_the_week_owes_nothing() -> None:
    gone = [AssignmentPeriod(WORKER, GRID, MONDAY - 30 * DAY, MONDAY)]
    assert required_patrols(gone, WEEK, CONFIG) == 0
    assert evaluate([], assignments=gone).status == "met"


# --- status ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("as_of", "status"),
    [
        (MONDAY - DAY, "on_track"),  # before the week: all seven days ahead
        (day_at(0, 0), "on_track"),
        (day_at(3, 23, 59), "on_track"),  # Thursday: 4 days for 3 patrols
        (day_at(4, 0), "at_risk"),  # Friday 00:00: Fri, Sat, Sun all needed
        (day_at(4, 23, 59), "at_risk"),
        (day_at(5, 0), "missed"),  # Saturday: 2 days left for 3 patrols
        (day_at(7, 0), "missed"),
    ],
)
def test_status_of_an_idle_week_as_of_each_moment(as_of: datetime, status: str) -> None:
    result = evaluate([], as_of=as_of)
    assert (result.counted, result.required, result.status) == (0, 3, status)


def test_status_as_of_follows_the_patrols_walked_so_far() -> None:
    checkins = good_walk(day_at(0)) + good_walk(day_at(4, 8))
    statuses = [evaluate(checkins, as_of=day_at(d, h)).status for d, h in [(4, 7), (4, 9), (5, 0)]]
    # Friday 07:00: 1 + 3 days = 4 > 3; Friday 09:00: 2 + 2 (Sat, Sun) = 4;
    # Saturday: 2 + 2 = 4 still, one more needed on either day.
    assert statuses == ["on_track", "on_track", "on_track"]
    assert evaluate(checkins, as_of=day_at(6, 0)).status == "at_risk"  # Sunday: 2 + 1 = 3
    assert evaluate(checkins, as_of=day_at(7, 0)).status == "missed"


def test_counted_patrol_today_leaves_today_out_of_capacity() -> None:
    friday = {date(2020, 9, 11): 1}
    assert remaining_capacity(friday, WEEK, day_at(4, 12), CONFIG) == 2
    assert status_as_of(friday, 3, WEEK, day_at(4, 12), CONFIG) == "at_risk"
    assert status_as_of({}, 3, WEEK, day_at(4, 12), CONFIG) == "at_risk"


def test_day_with_room_for_another_counted_patrol_still_adds_capacity() -> None:
    config = ComplianceConfig(max_counted_per_day=2, weekly_required=5)
    counted = {date(2020, 9, 7): 2, date(2020, 9, 12): 1}  # Monday 2, Saturday (today) 1
    assert remaining_capacity(counted, WEEK, day_at(5, 12), config) == 3  # Sat 1 + Sun 2
    assert status_as_of(counted, 5, WEEK, day_at(5, 12), config) == "on_track"
    assert status_as_of(counted, 5, WEEK, day_at(6, 12), config) == "at_risk"  # 3 + Sun 2
    assert status_as_of(counted, 5, WEEK, day_at(7), config) == "missed"


def test_patrol_not_yet_valid_at_as_of_does_not_count() -> None:
    checkins = good_walk(day_at(0))  # 09:00, 09:05, 09:15
    assert evaluate(checkins, as_of=day_at(0, 9, 14)).counted == 0
    assert evaluate(checkins, as_of=day_at(0, 9, 15)).counted == 1


def test_met_stays_met() -> None:
    checkins = good_walk(day_at(0)) + good_walk(day_at(1)) + good_walk(day_at(2))
    for as_of in [day_at(2, 9, 15), day_at(4), day_at(6, 23, 59), day_at(9), day_at(400)]:
        assert evaluate(checkins, as_of=as_of).status == "met"
    assert evaluate(checkins, as_of=day_at(2, 9, 14)).status == "on_track"


def test_every_unmet_week_is_missed_once_it_has_ended() -> None:
    two = good_walk(day_at(4)) + good_walk(day_at(5))  # Friday, Saturday
    assert evaluate(two, as_of=day_at(6, 8)).status == "at_risk"  # Sunday still open
    assert evaluate(two, as_of=WEEK.end(TZ)).status == "missed"
    assert status_as_of({date(2020, 9, 7): 2}, 3, WEEK, WEEK.end(TZ), CONFIG) == "missed"


def test_status_counts_only_days_of_the_week() -> None:
    with pytest.raises(ValueError, match="outside"):
        status_as_of({date(2020, 9, 14): 1}, 3, WEEK, day_at(0), CONFIG)


def test_week_is_final_when_the_watermark_reaches_end_plus_48_hours() -> None:
    final_at = WEEK.end(TZ) + timedelta(hours=48)
    assert not is_week_final(WEEK, final_at - timedelta(microseconds=1), CONFIG)
    assert is_week_final(WEEK, final_at, CONFIG)
    assert is_week_final(WEEK, final_at.astimezone(UTC) + DAY, CONFIG)
    assert not is_week_final(WEEK.next(), final_at, CONFIG)


def test_checkin_window_reaches_a_gap_before_and_the_patrol_horizon_after() -> None:
    assert CONFIG.patrol_horizon == 60 * MINUTE
    assert checkin_window(WEEK, CONFIG) == (MONDAY - 30 * MINUTE, MONDAY + 7 * DAY + 60 * MINUTE)


def test_status_changes_are_reported_once_in_key_order() -> None:
    a = ComplianceKey(WORKER, GRID, WEEK)
    b = ComplianceKey(OTHER_WORKER, GRID, WEEK)
    c = ComplianceKey(WORKER, GRID, WEEK.next())
    previous: dict[ComplianceKey, ComplianceStatus] = {a: "on_track", c: "on_track"}
    current: dict[ComplianceKey, ComplianceStatus] = {c: "at_risk", a: "on_track", b: "on_track"}
    assert status_changes(previous, current) == [
        StatusChange(c, "on_track", "at_risk"),
        StatusChange(b, None, "on_track"),
    ]
    assert status_changes(current, current) == []


def test_result_feeds_the_compliance_change_event() -> None:
    result = evaluate(good_walk(day_at(0)), as_of=day_at(1))
    change = ComplianceChange(
        event_id=UUID(int=1),
        worker_id=result.worker_id,
        grid_code=result.grid_code,
        week=str(result.week),
        new_status=result.status,
        counted_patrols=result.counted,
        required_patrols=result.required,
        changed_at=result.as_of,
    )
    assert (change.week, change.new_status) == ("2020-W37", "on_track")


def test_checkin_record_from_an_assignment_event() -> None:
    event = CheckInAssignment(
        event_id=UUID(int=7),
        worker_id=WORKER,
        lon=107.15,
        lat=34.36,
        recorded_at=day_at(0),
        accuracy_m=12.0,
        grid_code=GRID,
        community_code=GRID[:12],
        street_code=GRID[:9],
        district_code=GRID[:6],
        staff_id=WORKER,
        in_assigned_grid=True,
        assignment_rule="contains",
        assigned_at=day_at(0),
    )
    assert CheckinRecord.from_assignment(event) == CheckinRecord(
        UUID(int=7), WORKER, GRID, day_at(0), 12.0
    )
    # The phone's mock flag and the intake's speed flag ride along; old events have neither.
    flagged_event = event.model_copy(update={"mock": True, "flags": ["implausible_speed"]})
    assert CheckinRecord.from_assignment(flagged_event) == CheckinRecord(
        UUID(int=7), WORKER, GRID, day_at(0), 12.0, mock=True, implausible_speed=True
    )


def test_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="min_checkins"):
        ComplianceConfig(min_checkins=0)
    with pytest.raises(ValueError, match="patrol_gap"):
        ComplianceConfig(patrol_gap=-MINUTE)
    with pytest.raises(Exception, match="Nowhere"):
        ComplianceConfig(timezone="Nowhere/Atlantis")


# --- properties over generated histories ------------------------------------------------

# Weighted towards what makes patrols, with every boundary case of the defaults in reach.
GAPS = [
    timedelta(0),
    SECOND,
    4 * MINUTE,
    4 * MINUTE,
    4 * MINUTE,
    9 * MINUTE + 59 * SECOND,
    10 * MINUTE,
    29 * MINUTE + 59 * SECOND,
    30 * MINUTE,
    30 * MINUTE + SECOND,
    50 * MINUTE,
    3 * timedelta(hours=1),
    DAY,
]
WALK_GAPS = [timedelta(0), SECOND, 4 * MINUTE, 5 * MINUTE, 9 * MINUTE + 59 * SECOND, 30 * MINUTE]
CHAIN_GAPS = [10 * MINUTE, 25 * MINUTE, 30 * MINUTE]
ACCURACIES = [None, *[5.0] * 8, 100.0, 100.5, 101.0, 400.0]
# (mock, implausible_speed): mostly clean fixes, so that flagged walks stay the exception.
PRESENCE = [(False, False)] * 12 + [(True, False), (False, True), (True, True)]
VIEWS = [TZ, UTC, timezone(timedelta(hours=5, minutes=30))]  # one instant, several offsets
WEEKS = [WEEK, IsoWeek(2020, 53), IsoWeek(2021, 1)]
CONFIGS = [
    CONFIG,
    # Horizon set by the count: 3 gaps of 15 min = 45 min > 20 + 15.
    ComplianceConfig(
        patrol_gap=15 * MINUTE,
        min_checkins=4,
        min_duration=20 * MINUTE,
        max_counted_per_day=2,
        weekly_required=5,
    ),
    # Horizon set by the duration: 50 + 30 min > 1 gap of 30 min.
    ComplianceConfig(min_checkins=2, min_duration=50 * MINUTE, weekly_required=4),
    # A city that does not hold the speed flag against its workers.
    ComplianceConfig(refuse_implausible_speed=False),
]
PAIRS = [(w, g) for w in (WORKER, OTHER_WORKER) for g in (GRID, OTHER_GRID)]
LONG_AGO = datetime(2019, 1, 1, tzinfo=TZ)


@dataclass(frozen=True)
class History:
    """Check-ins and assignments around one week, and the moment to judge it at."""

    week: IsoWeek
    checkins: list[CheckinRecord]
    assignments: list[AssignmentPeriod]
    as_of: datetime
    config: ComplianceConfig


@st.composite
def histories(draw: st.DrawFn) -> History:
    week = draw(st.sampled_from(WEEKS))
    start, end = week.start(TZ), week.end(TZ)
    minutes_into_week = st.integers(0, 7 * 24 * 60).map(lambda m: start + m * MINUTE)
    midnights = st.integers(-1, 8).map(lambda d: start + d * DAY)
    change = draw(st.none() | midnights | minutes_into_week)
    if change is None:
        assignments = [AssignmentPeriod(WORKER, GRID, LONG_AGO, None)]
    else:
        assignments = [
            AssignmentPeriod(WORKER, GRID, LONG_AGO, change),
            AssignmentPeriod(WORKER, OTHER_GRID, change, None),
        ]
    assignments.append(AssignmentPeriod(OTHER_WORKER, GRID, draw(minutes_into_week), None))

    rows: list[tuple[datetime, str, str | None, float | None, tuple[bool, bool]]] = []
    for _ in range(draw(st.integers(0, 20))):
        # Walks from two hours before the week to two hours after it: plain walks, noise
        # with every boundary gap, and long chains begun near a week boundary, which run
        # past the end of the reading window.
        kind = draw(st.sampled_from(["walk", "walk", "noise", "chain"]))
        if kind == "chain":
            edge = draw(st.sampled_from([start, end]))
            t = edge - draw(st.integers(0, 3 * 60)) * MINUTE
        else:
            t = start - 2 * timedelta(hours=1) + draw(st.integers(0, (7 * 24 + 4) * 60)) * MINUTE
        t += draw(st.sampled_from([0, 1, 59])) * SECOND
        worker = draw(st.sampled_from([WORKER, WORKER, WORKER, OTHER_WORKER]))
        grid = draw(st.sampled_from([GRID, GRID, OTHER_GRID]))
        gaps = {"walk": WALK_GAPS, "noise": GAPS, "chain": CHAIN_GAPS}[kind]
        low, high = {"walk": (2, 8), "noise": (1, 8), "chain": (8, 30)}[kind]
        for _ in range(draw(st.integers(low, high))):
            located = draw(st.sampled_from([grid] * 14 + [OTHER_GRID, None]))
            accuracy, presence = draw(st.sampled_from(ACCURACIES)), draw(st.sampled_from(PRESENCE))
            rows.append((t, worker, located, accuracy, presence))
            t += draw(st.sampled_from(gaps))
    # Event ids in an order unrelated to time, so ties on recorded_at are broken blindly.
    ids = draw(st.permutations(range(1, len(rows) + 1)))
    checkins = [
        CheckinRecord(
            UUID(int=ids[i]),
            w,
            g,
            t.astimezone(draw(st.sampled_from(VIEWS))),
            a,
            mock=mock,
            implausible_speed=fast,
        )
        for i, (t, w, g, a, (mock, fast)) in enumerate(rows)
    ]
    as_of = draw(
        st.just(end + 30 * DAY)
        | st.integers(-24 * 60, 8 * 24 * 60).map(lambda m: start + m * MINUTE)
    )
    return History(week, checkins, assignments, as_of, draw(st.sampled_from(CONFIGS)))


def evaluate_all(history: History, checkins: list[CheckinRecord]) -> list[WeekResult]:
    return [
        evaluate_week(
            checkins,
            history.assignments,
            worker_id=worker,
            grid_code=grid,
            week=history.week,
            as_of=history.as_of,
            config=history.config,
        )
        for worker, grid in PAIRS
    ]


@settings(max_examples=300, deadline=None)
@given(histories())
def test_evaluation_equals_the_reference_implementation(history: History) -> None:
    window_to = checkin_window(history.week, history.config)[1]
    for (worker, grid), got in zip(PAIRS, evaluate_all(history, history.checkins), strict=True):
        ref = reference_week(
            history.checkins,
            history.assignments,
            worker,
            grid,
            str(history.week),
            history.as_of,
            history.config,
        )
        assert (got.counted, got.required, got.status) == (ref.counted, ref.required, ref.status)
        assert len(got.patrols) == len(ref.patrols)
        for mine, theirs in zip(got.patrols, ref.patrols, strict=True):
            assert (mine.start, mine.day, mine.invalid_reason or "valid", mine.count_reason) == (
                theirs.start,
                theirs.day,
                theirs.validity,
                theirs.count_reason,
            )
            # The engine stops reading at the window's end; the reference reads everything.
            if theirs.end < window_to:
                assert (mine.end, mine.checkin_count) == (theirs.end, theirs.checkins)
            else:
                assert mine.end < window_to
                assert mine.checkin_count <= theirs.checkins


@settings(max_examples=100, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_result_is_independent_of_input_order(history: History, rng: random.Random) -> None:
    shuffled = list(history.checkins)
    rng.shuffle(shuffled)
    assert evaluate_all(history, shuffled) == evaluate_all(history, history.checkins)


@settings(max_examples=100, deadline=None)
@given(histories(), st.data())
def test_duplicated_checkins_change_nothing(history: History, data: st.DataObject) -> None:
    again = data.draw(st.lists(st.sampled_from(history.checkins))) if history.checkins else []
    redelivered = history.checkins + again + history.checkins[: len(again)]
    assert evaluate_all(history, redelivered) == evaluate_all(history, history.checkins)


@settings(max_examples=100, deadline=None)
@given(histories())
def test_checkins_outside_the_window_change_nothing(history: History) -> None:
    window_from, window_to = checkin_window(history.week, history.config)
    inside = [c for c in history.checkins if window_from <= c.recorded_at < window_to]
    assert evaluate_all(history, inside) == evaluate_all(history, history.checkins)


@settings(max_examples=100, deadline=None)
@given(histories(), st.lists(st.integers(-2 * 24 * 60, 9 * 24 * 60), min_size=2, max_size=12))
def test_met_and_missed_never_change_back_as_time_passes(
    history: History, minutes: list[int]
) -> None:
    start = history.week.start(TZ)
    for worker, grid in PAIRS:
        results = [
            evaluate_week(
                history.checkins,
                history.assignments,
                worker_id=worker,
                grid_code=grid,
                week=history.week,
                as_of=start + m * MINUTE,
                config=history.config,
            )
            for m in sorted(minutes)
        ]
        for earlier, later in itertools.pairwise(results):
            assert later.counted >= earlier.counted
            if earlier.status in ("met", "missed"):
                assert later.status == earlier.status
