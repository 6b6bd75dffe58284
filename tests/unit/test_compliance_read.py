"""Compliance reports (geodata.compliance.report): inputs, per-pair evaluation, aggregation."""

from datetime import date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geodata.compliance import ComplianceConfig, IsoWeek, status_as_of
from geodata.compliance.report import (
    AreaLevel,
    PairKey,
    StatusCounts,
    WorkerCompliance,
    by_area,
    by_grid,
    check_code,
    evaluate_pairs,
    parse_week,
)
from geodata.dataset.layers import LOCAL_TZ
from geodata.errors import InvalidAreaCode, InvalidWeek
from geodata.events import ComplianceStatus
from geodata.staffing import AssignmentPeriod

CONFIG = ComplianceConfig()
WEEK = IsoWeek.parse("2020-W37")  # Monday 2020-09-07 to Sunday 2020-09-13
MONDAY = date(2020, 9, 7)
ALWAYS = datetime(2020, 1, 1, tzinfo=LOCAL_TZ)
GRID_A = "610302001001001"
GRID_B = "610302001001002"
GRID_C = "610302001002001"  # same street, other community


def at(day: int, hour: int = 12) -> datetime:
    """A local time in 2020-W37: day 0 is Monday."""
    return datetime(2020, 9, 7 + day, hour, tzinfo=LOCAL_TZ)


def period(
    worker: str, grid: str, start: datetime = ALWAYS, end: datetime | None = None
) -> AssignmentPeriod:
    """An assignment period, open-ended by default."""
    return AssignmentPeriod(worker, grid, start, end)


def days(*offsets: int, n: int = 1) -> dict[date, int]:
    """Valid patrols per local day: `n` on each Monday-based offset."""
    return {MONDAY + timedelta(days=o): n for o in offsets}


def worker(
    grid: str, worker_id: str, status: ComplianceStatus, counted: int = 0
) -> WorkerCompliance:
    """A ready-made per-worker result for aggregation tests."""
    return WorkerCompliance(worker_id, "", grid, 3, counted, status, ())


@pytest.mark.parametrize("name", ["2020-W37", "2020-W53", "2021-W01"])
def test_week_names_parse(name: str) -> None:
    assert str(parse_week(name)) == name


@pytest.mark.parametrize("name", ["2020-W60", "2021-W53", "2020-37", "2020W37", "", "2020-W00"])
def test_bad_week_names_are_invalid_week(name: str) -> None:
    with pytest.raises(InvalidWeek) as refused:
        parse_week(name)
    assert refused.value.code == "invalid_week"


@pytest.mark.parametrize(
    ("code", "level", "expected"),
    [
        (None, "district", ""),
        ("", "worker", ""),
        ("610302", "district", "610302"),
        ("6103", "district", "6103"),
        ("610302001", "street", "610302001"),
        ("610302001001", "grid", "610302001001"),
        ("610302001001001", "worker", "610302001001001"),
    ],
)
def test_code_prefixes_at_or_above_the_level_are_accepted(
    code: str | None, level: str, expected: str
) -> None:
    assert check_code(code, level) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "level"),
    [
        ("61030a", "district"),
        ("610302%", "worker"),
        ("6103020010010011", "worker"),
        ("610302001", "district"),
        ("610302001001", "street"),
        ("610302001001001", "community"),
    ],
)
def test_malformed_codes_and_codes_finer_than_the_level_are_refused(code: str, level: str) -> None:
    with pytest.raises(InvalidAreaCode) as refused:
        check_code(code, level)  # type: ignore[arg-type]
    assert refused.value.code == "invalid_code"


def test_a_day_counts_at_most_max_counted_per_day_valid_patrols() -> None:
    valid = {("W00001", GRID_A): days(0, n=3)}
    [one] = evaluate_pairs([period("W00001", GRID_A)], valid, {}, WEEK, at(6), CONFIG)
    [two] = evaluate_pairs(
        [period("W00001", GRID_A)], valid, {}, WEEK, at(6), ComplianceConfig(max_counted_per_day=2)
    )
    assert (one.counted, one.counted_days) == (1, (MONDAY,))
    assert two.counted == 2


def test_patrol_days_outside_the_week_are_ignored() -> None:
    valid = {("W00001", GRID_A): {MONDAY - timedelta(days=1): 1, MONDAY + timedelta(days=7): 1}}
    [result] = evaluate_pairs([period("W00001", GRID_A)], valid, {}, WEEK, at(2), CONFIG)
    assert (result.counted, result.counted_days) == (0, ())


def test_pairs_come_out_by_grid_then_worker_with_names() -> None:
    periods = [period("W00002", GRID_A), period("W00001", GRID_B), period("W00001", GRID_A)]
    results = evaluate_pairs(periods, {}, {"W00001": "张三"}, WEEK, at(0), CONFIG)
    assert [(r.grid_code, r.worker_id, r.name) for r in results] == [
        (GRID_A, "W00001", "张三"),
        (GRID_A, "W00002", ""),
        (GRID_B, "W00001", "张三"),
    ]


def test_a_worker_reassigned_midweek_owes_each_grid_its_share() -> None:
    thursday = datetime(2020, 9, 10, tzinfo=LOCAL_TZ)
    periods = [period("W00001", GRID_A, end=thursday), period("W00001", GRID_B, start=thursday)]
    by_grid_code = {
        r.grid_code: r.required for r in evaluate_pairs(periods, {}, {}, WEEK, at(0), CONFIG)
    }
    assert by_grid_code == {GRID_A: 2, GRID_B: 2}  # ceil(3×3/7), ceil(3×4/7)


def test_split_periods_in_one_grid_join_into_one_pair() -> None:
    wednesday = datetime(2020, 9, 9, tzinfo=LOCAL_TZ)
    periods = [period("W00001", GRID_A, end=wednesday), period("W00001", GRID_A, start=wednesday)]
    [result] = evaluate_pairs(periods, {}, {}, WEEK, at(0), CONFIG)
    assert result.required == 3


def test_pairs_sharing_counts_but_not_requirements_get_their_own_status() -> None:
    friday = datetime(2020, 9, 11, tzinfo=LOCAL_TZ)
    periods = [period("W00001", GRID_A), period("W00002", GRID_A, end=friday)]
    valid = {("W00001", GRID_A): days(0, 1), ("W00002", GRID_A): days(0, 1)}
    statuses = {
        r.worker_id: (r.required, r.status)
        for r in evaluate_pairs(periods, valid, {}, WEEK, at(3), CONFIG)
    }
    assert statuses == {"W00001": (3, "on_track"), "W00002": (2, "met")}


def test_grids_sum_their_workers() -> None:
    workers = [
        worker(GRID_A, "W00001", "met", 3),
        worker(GRID_A, "W00002", "missed", 1),
        worker(GRID_B, "W00003", "at_risk", 2),
    ]
    [a, b] = by_grid(workers, {GRID_A: "第1网格"})
    assert (a.grid_code, a.name, a.workers_met, a.workers_total, a.patrols) == (
        GRID_A,
        "第1网格",
        1,
        2,
        4,
    )
    assert a.statuses == StatusCounts(met=1, missed=1)
    assert (b.name, b.workers_met, b.workers_total, b.statuses) == (
        None,
        0,
        1,
        StatusCounts(at_risk=1),
    )


def test_areas_sum_their_grids_and_list_who_is_at_risk_or_missed() -> None:
    workers = [
        worker(GRID_C, "W00009", "missed"),
        worker(GRID_A, "W00001", "met", 3),
        worker(GRID_A, "W00002", "at_risk", 1),
        worker(GRID_B, "W00002", "on_track", 1),
    ]
    [community_a, community_c] = by_area(workers, "community", {})
    assert (community_a.code, community_a.grids, community_a.workers_met) == ("610302001001", 2, 1)
    assert (community_a.workers_total, community_a.patrols) == (3, 5)
    assert [(w.worker_id, w.status) for w in community_a.at_risk_or_missed] == [
        ("W00002", "at_risk")
    ]
    assert community_c.statuses == StatusCounts(missed=1)
    [street] = by_area(workers, "street", {"610302001": "经二路街道"})
    assert (street.code, street.name, street.grids, street.workers_total) == (
        "610302001",
        "经二路街道",
        3,
        4,
    )
    assert [(w.grid_code, w.worker_id) for w in street.at_risk_or_missed] == [
        (GRID_A, "W00002"),
        (GRID_C, "W00009"),
    ]


pair_histories = st.dictionaries(
    st.tuples(
        st.sampled_from(["W00001", "W00002", "W00003"]), st.sampled_from([GRID_A, GRID_B, GRID_C])
    ),
    st.tuples(
        st.integers(0, 7),  # assigned from this day on (7: next Monday, so nothing owed)
        st.dictionaries(st.integers(0, 6), st.integers(0, 3), max_size=7),
    ),
    max_size=9,
)


@given(histories=pair_histories, hours=st.integers(-24, 8 * 24))
def test_every_pair_gets_exactly_the_status_of_the_rule(
    histories: dict[PairKey, tuple[int, dict[int, int]]], hours: int
) -> None:
    as_of = datetime(2020, 9, 7, tzinfo=LOCAL_TZ) + timedelta(hours=hours)
    periods = [
        period(w, g, start=datetime(2020, 9, 7 + start_day, tzinfo=LOCAL_TZ))
        for (w, g), (start_day, _) in histories.items()
    ]
    valid = {
        key: {MONDAY + timedelta(days=d): n for d, n in per_day.items()}
        for key, (_, per_day) in histories.items()
    }
    results = evaluate_pairs(periods, valid, {}, WEEK, as_of, CONFIG)
    for result in results:
        counted = {
            d: min(n, 1) for d, n in valid[(result.worker_id, result.grid_code)].items() if n
        }
        assert result.counted == sum(counted.values())
        assert result.status == status_as_of(counted, result.required, WEEK, as_of, CONFIG)
    grids = by_grid(results, {})
    levels: tuple[AreaLevel, ...] = ("community", "street", "district")
    for level in levels:
        areas = by_area(results, level, {})
        assert sum(a.workers_total for a in areas) == sum(g.workers_total for g in grids)
        assert sum(a.workers_met for a in areas) == sum(g.workers_met for g in grids)
        assert sum(a.patrols for a in areas) == sum(g.patrols for g in grids)
