"""A replay's start and nights: `wangge up --simulate` shows walks within seconds.

The replay used to begin at the week's first message, Monday 00:51, and its first walk
at 07:01: six simulated hours, six real minutes at 60×, of a map with nothing moving.
"""

import numpy as np
import pytest
from shapely.geometry import box

from geodata.compliance import IsoWeek
from geodata.dataset.layers import REFERENCE_VALID_FROM
from geodata.staffing import AssignmentPeriod
from wangge.simulation import SimulatedWeek, World, simulate_week
from wangge.simulation.cli import REPLAY_LEAD_S, REPLAY_MAX_IDLE_S, replay_pacing
from wangge.simulation.plan import SimWorker
from wangge.simulation.producer import replay_timeline
from wangge.simulation.week import _FIX


@pytest.fixture(scope="module")
def week() -> SimulatedWeek:
    """Four workers in four small grids of Baoji: a week whose first report comes hours
    before its first walk (the reference city's does too, at 00:51 and 07:01)."""
    grids = {
        f"61030200100{i}001": box(107.14 + i * 0.004, 34.36, 107.143 + i * 0.004, 34.363)
        for i in range(4)
    }
    workers = tuple(
        SimWorker(
            f"W0000{i}", code, (AssignmentPeriod(f"W0000{i}", code, REFERENCE_VALID_FROM, None),)
        )
        for i, code in enumerate(grids)
    )
    world = World(grids, workers, frozenset(w.worker_id for w in workers))
    return simulate_week(world, IsoWeek(2020, 37), seed=7)


def test_messages_before_the_start_go_at_once_and_long_silences_are_cut() -> None:
    send = np.array([0.0, 500.0, 1000.0, 1010.0, 1040.0, 9000.0, 9030.0])
    timeline = replay_timeline(send, origin=1000.0 - 60, max_idle_s=120.0)
    assert timeline.tolist() == [0.0, 0.0, 60.0, 70.0, 100.0, 220.0, 250.0]


def test_without_a_limit_every_gap_is_kept() -> None:
    send = np.array([10.0, 20.0, 5000.0])
    assert replay_timeline(send, origin=10.0, max_idle_s=None).tolist() == [0.0, 10.0, 4990.0]
    assert replay_timeline(np.array([]), origin=0.0, max_idle_s=60.0).tolist() == []


def test_a_replay_starts_a_minute_before_its_first_checkin(week: SimulatedWeek) -> None:
    first = week.first_checkin_s()
    assert first is not None
    fixes = np.flatnonzero(week.source == _FIX)
    assert first == float(week.send_s[fixes[0]])
    # Reports come first, hours ahead of the first walk.
    assert fixes[0] > 0
    assert first - float(week.send_s[0]) > 3600

    pacing = replay_pacing(week, speed=60.0, rate=None)
    assert pacing.anchor_s is not None
    assert pacing.anchor_s == pytest.approx(first - REPLAY_LEAD_S)
    assert pacing.max_idle_s == REPLAY_MAX_IDLE_S
    timeline = replay_timeline(week.send_s, pacing.anchor_s, pacing.max_idle_s)
    # At 60×: the first walk's first fix a second in, everything before it at once.
    assert timeline[fixes[0]] / 60 == pytest.approx(1.0)
    assert not timeline[: fixes[0]].any()
    # The nights are cut: the week's replay is shorter than its span by hours.
    assert timeline[-1] < float(week.send_s[-1] - first) - 5 * 3600
    assert (np.diff(timeline) <= REPLAY_MAX_IDLE_S + 1e-9).all()
