"""Who is responsible for a check-in's grid and for an incident."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from geodata.staffing import AssignmentPeriod, WorkerRoster, choose_incident_staff

T0 = datetime(2020, 9, 9, 0, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
GRID = "610302001001001"
OTHER = "610302001001002"


def test_assignment_period_is_half_open() -> None:
    period = AssignmentPeriod("W00001", GRID, T0, T0 + timedelta(days=2))
    assert period.covers(T0)
    assert period.covers(T0 + timedelta(days=2) - timedelta(microseconds=1))
    assert not period.covers(T0 + timedelta(days=2))
    assert not period.covers(T0 - timedelta(microseconds=1))


def test_reassigned_worker_belongs_to_each_grid_only_in_its_period() -> None:
    roster = WorkerRoster(
        [
            AssignmentPeriod("W00001", GRID, T0 - timedelta(days=30), T0),
            AssignmentPeriod("W00001", OTHER, T0, None),
        ],
        {"W00001": "张伟", "W00002": "李娜"},
    )
    assert roster.is_assigned("W00001", GRID, T0 - timedelta(hours=1))
    assert not roster.is_assigned("W00001", GRID, T0)
    assert roster.is_assigned("W00001", OTHER, T0 + timedelta(days=400))
    assert roster.workers_of(GRID, T0) == []
    assert roster.is_known("W00002")
    assert not roster.is_assigned("W00002", GRID, T0)
    assert not roster.is_known("W99999")
    assert not roster.is_assigned("W00001", None, T0)


def test_a_grids_staff_are_listed_once_each_in_the_order_of_their_periods() -> None:
    roster = WorkerRoster(
        [
            AssignmentPeriod("W00002", GRID, T0 - timedelta(days=30), None),
            AssignmentPeriod("W00001", GRID, T0 - timedelta(days=30), T0 + timedelta(days=1)),
            # Overlapping the period before it: the worker is still listed once.
            AssignmentPeriod("W00001", GRID, T0, None),
            AssignmentPeriod("W00003", OTHER, T0, None),
        ],
        {"W00001": "张伟", "W00002": "李娜"},
    )
    assert roster.workers_of(GRID, T0) == ["W00002", "W00001"]
    assert roster.workers_of(GRID, T0 + timedelta(days=2)) == ["W00002", "W00001"]
    assert roster.workers_of(GRID, T0 - timedelta(days=31)) == []
    assert [roster.name_of(w) for w in ("W00001", "W00003")] == ["张伟", None]
    assert roster.is_known("W00003")
    assert len(roster) == 3


def test_incident_goes_to_the_reporter_when_they_are_assigned_there() -> None:
    staffing = choose_incident_staff(
        grid_code=GRID,
        community_code=GRID[:12],
        reporter_id="W00003",
        assigned_workers=["W00001", "W00003"],
        open_incidents={"W00003": 9},
    )
    assert (staffing.staff_id, staffing.escalated_to) == ("W00003", None)


def test_incident_goes_to_fewest_open_then_smallest_id() -> None:
    staffing = choose_incident_staff(
        grid_code=GRID,
        community_code=GRID[:12],
        reporter_id="W00999",
        assigned_workers=["W00001", "W00002", "W00003"],
        open_incidents={"W00001": 2, "W00002": 1, "W00003": 1},
    )
    assert staffing.staff_id == "W00002"


def test_grid_without_worker_escalates_to_its_community() -> None:
    staffing = choose_incident_staff(
        grid_code=GRID,
        community_code=GRID[:12],
        reporter_id=None,
        assigned_workers=[],
        open_incidents={},
    )
    assert (staffing.staff_id, staffing.escalated_to) == (None, GRID[:12])


def test_incident_outside_every_grid_has_no_staff_and_no_escalation() -> None:
    staffing = choose_incident_staff(
        grid_code=None,
        community_code=None,
        reporter_id=None,
        assigned_workers=[],
        open_incidents={},
    )
    assert (staffing.staff_id, staffing.escalated_to, staffing.reason) == (
        None,
        None,
        "outside_area",
    )
