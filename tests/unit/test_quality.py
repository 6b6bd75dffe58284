"""Fix quality flags: poor accuracy and impossible jumps are kept but flagged; a batch's
vectorised flags are the scalar rule's, fix by fix."""

import itertools
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from unittest import mock
from zoneinfo import ZoneInfo

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from geodata import quality
from geodata.quality import (
    EARTH_RADIUS_M,
    IMPLAUSIBLE_SPEED,
    LOW_ACCURACY,
    MAX_ACCURACY_M,
    MAX_SPEED_KMH,
    Fix,
    flag_fixes,
    haversine_m,
    implied_speed_kmh,
    quality_flags,
)
from geodata.spatial_index import to_epoch_us

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


# --------------------------------------------------------------------------- batches

WORKERS = ("W00001", "W00002", "W00003")
#: Speeds right at the limit, where numpy's and libm's last bits could disagree.
EDGE_SPEEDS = [
    MAX_SPEED_KMH,
    math.nextafter(MAX_SPEED_KMH, math.inf),
    math.nextafter(MAX_SPEED_KMH, 0),
    MAX_SPEED_KMH * (1 + 1e-12),
    MAX_SPEED_KMH * (1 - 1e-12),
    0.0,
]
EDGE_ACCURACIES = [None, MAX_ACCURACY_M, math.nextafter(MAX_ACCURACY_M, math.inf), 0.0]


@dataclass(frozen=True)
class Posted:
    """A fix as a batch holds it: who, where and when, how precise."""

    worker_id: str
    fix: Fix
    accuracy_m: float | None


@st.composite
def walks(draw: st.DrawFn) -> tuple[dict[str, Fix], list[list[Posted]]]:
    """Fixes of a few workers, each moving at a drawn speed (often right at the limit)
    from the previous one, cut into batches and shuffled within each; and what the
    workers' newest fixes were before the first batch (possibly later than some)."""
    at = dict.fromkeys(WORKERS, 0)
    where = dict.fromkeys(WORKERS, (107.15, 34.36))
    posted = []
    for _ in range(draw(st.integers(0, 30))):
        worker = draw(st.sampled_from(WORKERS))
        step_us = draw(st.one_of(st.just(0), st.integers(1, 120_000_000)))
        speed = draw(st.one_of(st.sampled_from(EDGE_SPEEDS), st.floats(0, 400)))
        metres = speed / 3.6 * step_us / 1e6 * draw(st.sampled_from([1, -1]))
        lon, lat = where[worker]
        if draw(st.booleans()):
            lat += math.degrees(metres / EARTH_RADIUS_M)
        else:
            lon += math.degrees(metres / (EARTH_RADIUS_M * math.cos(math.radians(lat))))
        at[worker] += step_us
        where[worker] = (lon, lat)
        accuracy = draw(st.one_of(st.sampled_from(EDGE_ACCURACIES), st.floats(0, 500)))
        fix = Fix(T0 + timedelta(microseconds=at[worker]), lon, lat)
        posted.append(Posted(worker, fix, accuracy))
    last = {}
    times = sorted({p.fix.recorded_at for p in posted}) or [T0]
    near_t0 = st.integers(-60_000_000, 600_000_000).map(lambda us: T0 + timedelta(microseconds=us))
    for worker in draw(st.sets(st.sampled_from(WORKERS))):
        # Often at the very time of a fix of the batch, to tell which of the two is newer.
        stored_at = draw(st.one_of(st.sampled_from(times), near_t0))
        lon = 107.15 + draw(st.sampled_from([0.0, 0.001, 0.5]))
        last[worker] = Fix(stored_at, lon, 34.36)
    cuts = sorted(draw(st.lists(st.integers(0, len(posted)), max_size=4)))
    bounds = [0, *cuts, len(posted)]
    batches = [draw(st.permutations(posted[a:b])) for a, b in itertools.pairwise(bounds)]
    return last, [batch for batch in batches if batch]


def _scalar(last: dict[str, Fix], batch: list[Posted]) -> list[list[str]]:
    """`quality_flags` fix by fix, in event-time order, updating `last` as it goes."""
    flags: list[list[str]] = [[] for _ in batch]
    order = sorted(range(len(batch)), key=lambda i: (batch[i].fix.recorded_at, i))
    for i in order:
        posted = batch[i]
        previous = last.get(posted.worker_id)
        flags[i] = quality_flags(posted.accuracy_m, posted.fix, previous)
        if previous is None or posted.fix.recorded_at >= previous.recorded_at:
            last[posted.worker_id] = posted.fix
    return flags


def _vectorised(last: dict[str, Fix], batch: list[Posted]) -> list[list[str]]:
    """`flag_fixes` over the batch's arrays, updating `last` with its newest fixes."""
    flagged = flag_fixes(
        [p.worker_id for p in batch],
        [p.fix.recorded_at for p in batch],
        np.array([to_epoch_us(p.fix.recorded_at) for p in batch], np.int64),
        np.array([p.fix.lon for p in batch], float),
        np.array([p.fix.lat for p in batch], float),
        np.array([np.nan if p.accuracy_m is None else p.accuracy_m for p in batch], float),
        last,
    )
    last.update(flagged.latest)
    return flagged.flags


@settings(max_examples=300)
@given(walks(), st.sampled_from([0.0, 1e-10, -1e-10]))
def test_batch_flags_agree_with_the_scalar_rule_fix_by_fix(
    case: tuple[dict[str, Fix], list[list[Posted]]], skew: float
) -> None:
    """Also when numpy's speeds are a little off: its trigonometry may differ from libm's
    in the last bits (here exaggerated), which must never flip a flag at the limit."""
    stored, batches = case
    scalar_last, vector_last = dict(stored), dict(stored)
    exact = quality._speeds_kmh
    with mock.patch.object(quality, "_speeds_kmh", lambda *a: exact(*a) * (1 + skew)):
        for batch in batches:
            assert _vectorised(vector_last, batch) == _scalar(scalar_last, batch)
    assert vector_last == scalar_last


def test_a_fix_older_than_the_stored_one_is_compared_with_the_stored_one() -> None:
    stored = {"W00001": Fix(T0 + timedelta(minutes=10), 107.15, 34.36)}
    # About 92 km from the stored fix, 9 and 10 minutes before it: both far too fast.
    earlier = Posted("W00001", Fix(T0, 108.15, 34.36), None)
    later = Posted("W00001", Fix(T0 + timedelta(minutes=1), 108.15, 34.36), None)
    last = dict(stored)
    assert _vectorised(last, [later, earlier]) == [[IMPLAUSIBLE_SPEED], [IMPLAUSIBLE_SPEED]]
    assert last == stored
