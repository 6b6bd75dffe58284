"""The held weeks answer as the recomputed report does, and a change touches only its areas."""

from collections import defaultdict
from datetime import date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geodata.compliance import ComplianceConfig, IsoWeek
from geodata.compliance.held import (
    AnswerCache,
    AnswerKey,
    HeldNames,
    HeldWeek,
    OpenWeeks,
    open_weeks,
    prefixes,
)
from geodata.compliance.report import (
    CODE_LENGTH,
    Level,
    PairKey,
    ReportItems,
    check_code,
    evaluate_pairs,
    report_items,
)
from geodata.errors import GridNotFound
from geodata.staffing import AssignmentPeriod

CONFIG = ComplianceConfig()
TZ = CONFIG.tz
WEEK = IsoWeek.parse("2020-W37")
START = WEEK.start(TZ)
LEVELS: tuple[Level, ...] = ("worker", "grid", "community", "street", "district")
# Two districts, two streets each, two communities each, three grids each.
GRIDS = [
    f"{district}{street}{community}{grid}"
    for district in ("610302", "610303")
    for street in ("001", "002")
    for community in ("001", "002")
    for grid in ("001", "002", "003")
]
WORKERS = [f"W{n:05d}" for n in range(1, 9)]
NAMES = HeldNames(
    frozenset(GRIDS),
    {
        level: {
            code[: CODE_LENGTH[level]]: f"{level} {code[: CODE_LENGTH[level]]}" for code in GRIDS
        }
        for level in ("grid", "community", "street", "district")
    },
)
WORKER_NAMES = {worker: f"name of {worker}" for worker in WORKERS}

Patrol = tuple[str, str, date, datetime]
"""(worker, grid, local day, valid_at): a valid patrol row as the engine stores it."""


def moment(minutes: int) -> datetime:
    """Minutes after the week's start, local time."""
    return START + timedelta(minutes=minutes)


periods_strategy = st.lists(
    st.builds(
        lambda worker, grid, begin, length: AssignmentPeriod(
            worker, grid, moment(begin), None if length is None else moment(begin + length)
        ),
        st.sampled_from(WORKERS),
        st.sampled_from(GRIDS),
        st.integers(-3 * 1440, 6 * 1440),
        st.none() | st.integers(1, 9 * 1440),
    ),
    max_size=14,
)
patrols_strategy = st.lists(
    st.builds(
        # A patrol's day is the day it began; it may become valid after that day's midnight.
        lambda worker, grid, day, minute: (
            worker,
            grid,
            WEEK.days()[day],
            moment(day * 1440 + minute),
        ),
        st.sampled_from(WORKERS),
        st.sampled_from(GRIDS),
        st.integers(0, 6),
        st.integers(0, 1440 + 120),
    ),
    max_size=40,
)
as_of_strategy = st.integers(-2 * 1440, 10 * 1440).map(moment)


@st.composite
def level_and_code(draw: st.DrawFn) -> tuple[Level, str]:
    """A level and a code prefix not finer than it ('' for the whole city)."""
    level = draw(st.sampled_from(LEVELS))
    grid = draw(st.sampled_from(GRIDS))
    return level, grid[: draw(st.integers(0, CODE_LENGTH[level]))]


def held_week(periods: list[AssignmentPeriod], patrols: list[Patrol]) -> HeldWeek:
    """The week as `ComplianceMemory` loads it from these rows."""
    times: dict[PairKey, dict[date, list[datetime]]] = defaultdict(lambda: defaultdict(list))
    for worker, grid, day, at in sorted(patrols, key=lambda p: p[3]):
        times[(worker, grid)][day].append(at)
    held = {key: {d: tuple(t) for d, t in days.items()} for key, days in times.items()}
    return HeldWeek.build(WEEK, periods, held, WORKER_NAMES)


def recomputed(
    periods: list[AssignmentPeriod],
    patrols: list[Patrol],
    as_of: datetime,
    level: Level,
    code: str,
) -> ReportItems:
    """What `compliance_report` computes from the same rows: the periods and the patrols
    valid by `as_of` under the code, counted per day."""
    prefix = check_code(code, level)
    under = [p for p in periods if p.grid_code.startswith(prefix)]
    valid: dict[PairKey, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    for worker, grid, day, valid_at in patrols:
        if grid.startswith(prefix) and valid_at <= as_of:
            valid[(worker, grid)][day] += 1
    workers = evaluate_pairs(under, valid, WORKER_NAMES, WEEK, as_of, CONFIG)
    return report_items(workers, level, NAMES.of(level))


@given(
    periods=periods_strategy,
    patrols=patrols_strategy,
    as_of=as_of_strategy,
    where=level_and_code(),
)
def test_the_held_week_reports_what_the_rows_recompute_to(
    periods: list[AssignmentPeriod],
    patrols: list[Patrol],
    as_of: datetime,
    where: tuple[Level, str],
) -> None:
    level, code = where
    report = held_week(periods, patrols).report(as_of, NAMES, CONFIG, level=level, code=code)
    assert report.items == recomputed(periods, patrols, as_of, level, code)
    assert (report.week, report.as_of, report.level, report.code) == (WEEK, as_of, level, code)


@given(
    periods=periods_strategy,
    patrols=patrols_strategy,
    as_of=as_of_strategy,
    where=level_and_code(),
    fraction=st.floats(0, 1),
)
def test_every_report_within_the_steady_span_is_the_same(
    periods: list[AssignmentPeriod],
    patrols: list[Patrol],
    as_of: datetime,
    where: tuple[Level, str],
    fraction: float,
) -> None:
    level, code = where
    held = held_week(periods, patrols)
    start, end = held.steady_span(as_of, TZ)
    assert start <= as_of < end
    expected = held.report(as_of, NAMES, CONFIG, level=level, code=code).items
    last = end - timedelta(microseconds=1)
    for t in (start, last, start + (last - start) * fraction):
        assert held.report(t, NAMES, CONFIG, level=level, code=code).items == expected, t


def test_the_steady_span_ends_at_the_next_valid_at_or_midnight() -> None:
    worker, grid = WORKERS[0], GRIDS[0]
    period = AssignmentPeriod(worker, grid, moment(-1440), None)
    held = held_week([period], [(worker, grid, WEEK.days()[1], moment(1440 + 600))])
    # Tuesday 10:00 is when the patrol became valid: the span around 09:00 stops there.
    assert held.steady_span(moment(1440 + 540), TZ) == (moment(1440), moment(1440 + 600))
    assert held.steady_span(moment(1440 + 600), TZ) == (moment(1440 + 600), moment(2 * 1440))


def test_a_full_grid_code_nobody_knows_is_not_found_and_a_known_empty_one_is_empty() -> None:
    held = held_week([], [])
    with pytest.raises(GridNotFound):
        held.report(moment(60), NAMES, CONFIG, code="610302001001999")
    assert held.report(moment(60), NAMES, CONFIG, code=GRIDS[0]).items == []


def test_patrols_of_pairs_without_a_period_are_not_held() -> None:
    worker, grid = WORKERS[0], GRIDS[0]
    held = held_week([], [(worker, grid, WEEK.days()[0], moment(600))])
    assert held.pairs == {}


def test_a_change_touches_the_grids_of_the_pairs_whose_patrols_changed() -> None:
    mine, other = (WORKERS[0], GRIDS[0]), (WORKERS[1], GRIDS[5])
    periods = [AssignmentPeriod(*pair, moment(-1440), None) for pair in (mine, other)]
    monday = WEEK.days()[0]
    held = held_week(periods, [(*mine, monday, moment(600)), (*other, monday, moment(600))])

    same, touched = held.with_valid_at({other: {monday: (moment(600),)}})
    assert same is held
    assert touched == set()

    changed, touched = held.with_valid_at(
        {mine: {monday: (moment(600),), WEEK.days()[1]: (moment(2000),)}}
    )
    assert touched == {mine[1]}
    assert changed.pairs[other] is held.pairs[other]
    assert changed.pairs[mine].valid_per_day(moment(3000)) == {monday: 1, WEEK.days()[1]: 1}
    # A pair with no period this week is nobody's item: nothing to touch.
    assert held.with_valid_at({(WORKERS[2], GRIDS[2]): {}})[1] == set()


def test_prefixes_are_every_code_a_grid_lies_under() -> None:
    assert prefixes(["610302001001002"]) == {"610302001001002"[:n] for n in range(16)}
    assert "" in prefixes(["1"])


SPAN = (moment(0), moment(1440))


def test_a_change_drops_only_the_answers_of_the_areas_holding_its_grid() -> None:
    cache = AnswerCache()
    grid = GRIDS[0]  # 610302 001 001 001
    elsewhere = GRIDS[-1]  # 610303 002 002 003
    keys: list[AnswerKey] = [
        (WEEK, "worker", ""),
        (WEEK, "district", grid[:6]),
        (WEEK, "community", grid[:12]),
        (WEEK, "grid", grid[:9]),
        (WEEK, "worker", grid),
        (WEEK, "community", elsewhere[:12]),
        (WEEK, "district", elsewhere[:6]),
        (WEEK, "grid", GRIDS[1]),  # the neighbour in the same community
        (WEEK.next(), "worker", ""),  # another week
    ]
    for key in keys:
        assert cache.put(key, b"[]", SPAN, cache.generation)
    assert cache.invalidate(WEEK, {grid}) == 5
    kept = [key for key in keys if cache.get(key, moment(60)) is not None]
    assert kept == keys[5:]


def test_an_answer_rendered_before_a_change_is_not_kept_after_it() -> None:
    cache = AnswerCache()
    generation = cache.generation
    cache.invalidate(WEEK, {GRIDS[3]})
    assert not cache.put((WEEK, "worker", ""), b"[]", SPAN, generation)
    assert cache.get((WEEK, "worker", ""), moment(60)) is None
    # An empty change is no change.
    generation = cache.generation
    assert cache.invalidate(WEEK, set()) == 0
    assert cache.put((WEEK, "worker", ""), b"[]", SPAN, generation)


def test_an_answer_is_served_within_its_span_only() -> None:
    cache = AnswerCache()
    cache.put((WEEK, "worker", ""), b"[1]", SPAN, cache.generation)
    assert cache.get((WEEK, "worker", ""), SPAN[0]) == b"[1]"
    assert cache.get((WEEK, "worker", ""), SPAN[1] - timedelta(microseconds=1)) == b"[1]"
    assert cache.get((WEEK, "worker", ""), SPAN[1]) is None
    assert cache.get((WEEK, "worker", ""), SPAN[0] - timedelta(microseconds=1)) is None


@given(bound=st.integers(0, 4_000), sizes=st.lists(st.integers(0, 1_500), max_size=40))
def test_the_answers_never_take_more_than_their_bound(bound: int, sizes: list[int]) -> None:
    cache = AnswerCache(bound)
    for i, size in enumerate(sizes):
        cache.put((WEEK, "grid", str(i)), b"x" * size, SPAN, cache.generation)
        assert cache.size_bytes <= bound
    cache.clear()
    assert (len(cache), cache.size_bytes) == (0, 0)


@pytest.mark.parametrize(
    ("now", "weeks"),
    [
        (moment(600), ("2020-W36", "2020-W37")),  # Monday: last week's late check-ins count
        (moment(2 * 1440 - 1), ("2020-W36", "2020-W37")),
        (moment(2 * 1440), ("2020-W37",)),  # 48 hours after its end, last week is closed
        (moment(7 * 1440 - 1), ("2020-W37",)),
    ],
)
def test_the_open_weeks_are_this_one_and_last_one_within_the_lateness(
    now: datetime, weeks: tuple[str, ...]
) -> None:
    assert tuple(str(week) for week in open_weeks(now, CONFIG)) == weeks


@given(
    now=st.integers(-20 * 1440, 20 * 1440).map(moment),
    lateness_h=st.integers(0, 10 * 24),
    fraction=st.floats(0, 1),
)
def test_the_open_weeks_stay_the_same_throughout_their_span(
    now: datetime, lateness_h: int, fraction: float
) -> None:
    config = ComplianceConfig(allowed_lateness=timedelta(hours=lateness_h))
    known = OpenWeeks.at(now, config)
    assert known.since <= now < known.until
    last = known.until - timedelta(microseconds=1)
    for t in (known.since, last, known.since + (last - known.since) * fraction):
        assert OpenWeeks.at(t, config).weeks == known.weeks, t
    # Just outside the span, the weeks are others.
    assert OpenWeeks.at(known.until, config).weeks != known.weeks
    before = known.since - timedelta(microseconds=1)
    assert OpenWeeks.at(before, config).weeks != known.weeks
