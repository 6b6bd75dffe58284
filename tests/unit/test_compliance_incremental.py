"""The incremental fold of a week: after every batch it answers as the rule and the oracle.

Random histories (the generator of test_compliance) are fed to a `WeekFold` in random
batches, in random order and with repeats; after each batch its patrols and status must
be `evaluate_week`'s on everything fed so far, and the reference reading's.
"""

import random
import uuid
from datetime import date, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from geodata.compliance import (
    CheckinRecord,
    ComplianceConfig,
    ComplianceKey,
    IsoWeek,
    WeekResult,
    checkin_window,
    evaluate_week,
    is_usable,
    unique_checkins,
    valid_at,
)
from geodata.compliance.incremental import WeekFold, WeekFolds
from geodata.staffing import AssignmentPeriod
from tests.reference_compliance import reference_week
from tests.unit.test_compliance import ALWAYS, GRID, MONDAY, PAIRS, WEEK, WORKER, History, histories

CONFIG = ComplianceConfig()
MINUTE = timedelta(minutes=1)


def _cut(
    deliveries: list[CheckinRecord], largest: int, rng: random.Random
) -> list[list[CheckinRecord]]:
    """`deliveries` in their order, cut into batches of 1 to `largest`."""
    batches = []
    while deliveries:
        size = rng.randint(1, largest)
        batches.append(deliveries[:size])
        deliveries = deliveries[size:]
    return batches


def _batches(checkins: list[CheckinRecord], rng: random.Random) -> list[list[CheckinRecord]]:
    """The check-ins shuffled, a third of them repeated, cut into batches of 1 to 6."""
    deliveries = checkins + rng.sample(checkins, k=len(checkins) // 3)
    rng.shuffle(deliveries)
    return _cut(deliveries, 6, rng)


def _assert_agrees(
    fold: WeekFold,
    fed: list[CheckinRecord],
    periods: list[AssignmentPeriod],
    history: History,
) -> None:
    key, config = fold.key, history.config
    watermark = max(c.recorded_at for c in fed)

    def rule_as_of(as_of: datetime) -> WeekResult:
        return evaluate_week(
            fed,
            periods,
            worker_id=key.worker_id,
            grid_code=key.grid_code,
            week=key.week,
            as_of=as_of,
            config=config,
        )

    expected = rule_as_of(watermark)
    got = fold.all_patrols()
    assert tuple(p.patrol for p in got) == expected.patrols
    window_from, window_to = checkin_window(key.week, config)
    usable = [
        c
        for c in unique_checkins(fed)
        if (c.worker_id, c.grid_code) == (key.worker_id, key.grid_code)
        and window_from <= c.recorded_at < window_to
        and is_usable(c, periods, config)
    ]
    assert [p.valid_at for p in got] == [valid_at(p, usable, config) for p in expected.patrols]
    status = fold.status(watermark)
    assert (status.status, status.counted, status.required) == (
        expected.status,
        expected.counted,
        expected.required,
    )
    oracle = reference_week(
        fed, periods, key.worker_id, key.grid_code, str(key.week), watermark, config
    )
    assert (status.status, status.counted, status.required) == (
        oracle.status,
        oracle.counted,
        oracle.required,
    )
    assert [(p.patrol.start, p.patrol.day, p.patrol.count_reason) for p in got] == [
        (p.start, p.day, p.count_reason) for p in oracle.patrols
    ]
    # Behind its newest check-in (another partition's backlog holds the watermark back),
    # a walk counts only from the moment it became valid.
    times = sorted(c.recorded_at for c in fed)
    behind = times[len(times) // 2]
    then = rule_as_of(behind)
    status_then = fold.status(behind)
    assert (status_then.status, status_then.counted) == (then.status, then.counted)


@settings(max_examples=50, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_fold_agrees_with_the_rule_and_the_oracle_after_every_batch(
    history: History, rng: random.Random
) -> None:
    folds = {
        pair: WeekFold(ComplianceKey(*pair, history.week), history.assignments, history.config)
        for pair in PAIRS
    }
    fed: list[CheckinRecord] = []
    for batch in _batches(history.checkins, rng):
        fed.extend(batch)
        for fold in folds.values():
            fold.add(batch)
            _assert_agrees(fold, fed, history.assignments, history)


def _in_order(checkins: list[CheckinRecord], rng: random.Random) -> list[list[CheckinRecord]]:
    """As a phone sends them: by time, some sent again, in batches of 1 to 3."""
    deliveries = sorted(checkins, key=lambda c: (c.recorded_at, c.event_id))
    for checkin in rng.sample(deliveries, k=len(deliveries) // 4):
        deliveries.insert(rng.randint(deliveries.index(checkin), len(deliveries)), checkin)
    return _cut(deliveries, 3, rng)


@settings(max_examples=50, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_a_fold_fed_in_time_order_agrees_after_every_batch(
    history: History, rng: random.Random
) -> None:
    # Mostly the newest fix of the walk going on, which grows that walk's patrol alone.
    folds = [
        WeekFold(ComplianceKey(*pair, history.week), history.assignments, history.config)
        for pair in PAIRS
    ]
    fed: list[CheckinRecord] = []
    for batch in _in_order(history.checkins, rng):
        fed.extend(batch)
        for fold in folds:
            fold.add(batch)
            _assert_agrees(fold, fed, history.assignments, history)


@settings(max_examples=25, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_a_fold_under_new_periods_agrees_with_the_rule_under_them(
    history: History, rng: random.Random
) -> None:
    # Folded first as if the worker held GRID all along, then the true periods arrive.
    before = [AssignmentPeriod(w, g, MONDAY - timedelta(days=400), None) for w, g in PAIRS]
    batches = _batches(history.checkins, rng)
    half = len(batches) // 2
    for pair in PAIRS:
        fold = WeekFold(ComplianceKey(*pair, history.week), before, history.config)
        fed: list[CheckinRecord] = []
        for batch in batches[:half]:
            fed.extend(batch)
            fold.add(batch)
        fold = fold.with_periods(history.assignments)
        if fed:
            _assert_agrees(fold, fed, history.assignments, history)
        for batch in batches[half:]:
            fed.extend(batch)
            fold.add(batch)
            _assert_agrees(fold, fed, history.assignments, history)


def _walk(day: int, hour: int, fixes: int = 12) -> list[CheckinRecord]:
    start = MONDAY + timedelta(days=day, hours=hour)
    return [
        CheckinRecord(uuid.uuid4(), WORKER, GRID, start + i * 2 * MINUTE, 8.0) for i in range(fixes)
    ]


def _sunday() -> date:
    return WEEK.days()[6]


def test_a_sunday_fix_cuts_only_sunday_after_a_full_week() -> None:
    fold = WeekFold(ComplianceKey(WORKER, GRID, WEEK), ALWAYS, CONFIG)
    for day in range(6):
        assert fold.add(_walk(day, 9)) == {WEEK.days()[day]}
    before = dict(fold.patrols)
    assert fold.add(_walk(6, 9)) == {_sunday()}
    assert {d: p for d, p in fold.patrols.items() if d != _sunday()} == before


def test_each_newer_fix_of_the_walk_going_on_reads_no_day_again(monkeypatch: Any) -> None:
    cuts: list[date] = []
    cut_day = WeekFold._cut_day

    def counting(fold: WeekFold, day: date) -> None:
        cuts.append(day)
        cut_day(fold, day)

    monkeypatch.setattr(WeekFold, "_cut_day", counting)
    fold = WeekFold(ComplianceKey(WORKER, GRID, WEEK), ALWAYS, CONFIG)
    walk = _walk(3, 9, fixes=30)
    for fix in walk:
        assert fold.add([fix]) == {WEEK.days()[3]}
    assert cuts == [WEEK.days()[3]]  # the walk's first fix began it; the rest grew it
    (patrol,) = fold.all_patrols()
    assert (patrol.patrol.checkin_count, patrol.patrol.end) == (30, walk[-1].recorded_at)
    assert patrol.valid_at == walk[5].recorded_at  # the sixth fix, 10 min in, made it valid
    assert fold.status(walk[-1].recorded_at).counted == 1


def test_a_fix_joining_two_walks_across_midnight_cuts_both_days() -> None:
    fold = WeekFold(ComplianceKey(WORKER, GRID, WEEK), ALWAYS, CONFIG)
    saturday_night = MONDAY + timedelta(days=5, hours=23, minutes=40)
    first = [
        CheckinRecord(uuid.uuid4(), WORKER, GRID, saturday_night + i * 5 * MINUTE, 8.0)
        for i in range(3)
    ]
    second = [
        CheckinRecord(uuid.uuid4(), WORKER, GRID, saturday_night + (50 + i * 5) * MINUTE, 8.0)
        for i in range(3)
    ]
    fold.add(first + second)
    assert [p.patrol.day for p in fold.all_patrols()] == WEEK.days()[5:7]
    bridge = CheckinRecord(uuid.uuid4(), WORKER, GRID, saturday_night + 30 * MINUTE, 8.0)
    assert fold.add([bridge]) == set(WEEK.days()[5:7])
    (patrol,) = fold.all_patrols()
    assert (patrol.patrol.day, patrol.patrol.checkin_count) == (WEEK.days()[5], 7)


def test_a_repeated_or_foreign_fix_cuts_nothing() -> None:
    fold = WeekFold(ComplianceKey(WORKER, GRID, WEEK), ALWAYS, CONFIG)
    walk = _walk(2, 9)
    fold.add(walk)
    other_week = CheckinRecord(uuid.uuid4(), WORKER, GRID, MONDAY + timedelta(days=9), 8.0)
    assert (
        fold.add([walk[3], other_week, CheckinRecord(uuid.uuid4(), "W9", GRID, MONDAY, 8.0)])
        == set()
    )


def test_held_folds_beyond_the_limit_drop_the_least_recently_used() -> None:
    folds = WeekFolds(max_checkins=20)
    keys = [
        ComplianceKey(WORKER, GRID, week) for week in (IsoWeek(2020, 36), WEEK, IsoWeek(2020, 38))
    ]
    for key in keys:
        fold = WeekFold(key, ALWAYS, CONFIG)
        start = checkin_window(key.week, CONFIG)[0] + timedelta(hours=12)
        fold.add(
            CheckinRecord(uuid.uuid4(), WORKER, GRID, start + i * MINUTE, 8.0) for i in range(8)
        )
        folds.put(fold)
        assert folds.get(keys[0]) is not None  # the first stays the most recently used
    assert folds.held_keys() == [keys[2], keys[0]]
    assert len(folds) == 16


def test_an_unassigned_pair_owes_nothing_and_its_walks_make_no_patrol() -> None:
    stranger = datetime(2020, 1, 1, tzinfo=MONDAY.tzinfo)
    periods = [AssignmentPeriod("W9", GRID, stranger, None)]
    fold = WeekFold(ComplianceKey(WORKER, GRID, WEEK), periods, CONFIG)
    assert fold.add(_walk(1, 9)) == set()
    assert fold.required == 0
    assert fold.all_patrols() == []
