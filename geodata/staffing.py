"""Who is responsible: worker↔grid assignments over time, and the incident staffing rule.

Pure functions over plain data, so the consumers, the API and the tests share them.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class AssignmentPeriod:
    """A worker assigned to a grid from `valid_from` until `valid_to` (None: still)."""

    worker_id: str
    grid_code: str
    valid_from: datetime
    valid_to: datetime | None

    def covers(self, at: datetime) -> bool:
        """Whether the assignment was in force at `at` (half-open interval)."""
        return self.valid_from <= at and (self.valid_to is None or at < self.valid_to)


class WorkerRoster:
    """Every worker (id and name) and all assignment periods, indexed both ways.

    The one model of staff: the consumers ask it who is assigned, the API names a grid's
    staff from it (`geodata.db.grid_cache`).
    """

    def __init__(self, periods: Iterable[AssignmentPeriod], workers: Mapping[str, str]) -> None:
        """`periods` in the order `workers_of` should answer in; `workers`: id to name."""
        self._by_worker: dict[str, list[AssignmentPeriod]] = defaultdict(list)
        self._by_grid: dict[str, list[AssignmentPeriod]] = defaultdict(list)
        for period in periods:
            self._by_worker[period.worker_id].append(period)
            self._by_grid[period.grid_code].append(period)
        self._names = dict(workers)
        self._known = frozenset(self._names) | frozenset(self._by_worker)

    def __len__(self) -> int:
        return len(self._known)

    def is_known(self, worker_id: str) -> bool:
        """Whether the worker exists at all (assigned now, before, or never)."""
        return worker_id in self._known

    def is_assigned(self, worker_id: str, grid_code: str | None, at: datetime) -> bool:
        """Whether the worker was assigned to the grid at `at`."""
        if grid_code is None:
            return False
        return any(
            p.grid_code == grid_code and p.covers(at) for p in self._by_worker.get(worker_id, ())
        )

    def periods_of(self, worker_id: str) -> list[AssignmentPeriod]:
        """Every assignment period of a worker, in any grid."""
        return list(self._by_worker.get(worker_id, ()))

    def pairs_during(self, start: datetime, end: datetime) -> list[tuple[str, str]]:
        """(worker, grid) pairs with an assignment overlapping [start, end), sorted."""
        return sorted(
            {
                (p.worker_id, p.grid_code)
                for periods in self._by_worker.values()
                for p in periods
                if p.valid_from < end and (p.valid_to is None or p.valid_to > start)
            }
        )

    def workers_of(self, grid_code: str, at: datetime) -> list[str]:
        """The workers assigned to a grid at `at`, each once, in the order of their periods.

        `load_snapshot` gives the periods by worker id, as the database orders them, so
        this is the order `grid_queries.grid_detail` lists a grid's staff in.
        """
        # Overlapping periods of one worker count once, as SELECT DISTINCT does.
        covering = (p.worker_id for p in self._by_grid.get(grid_code, ()) if p.covers(at))
        return list(dict.fromkeys(covering))

    def name_of(self, worker_id: str) -> str | None:
        """The worker's name; None for one known only by their periods."""
        return self._names.get(worker_id)


@dataclass(frozen=True)
class IncidentStaffing:
    """The decision for one incident: a worker, or an escalation to the community."""

    staff_id: str | None
    escalated_to: str | None
    reason: str


def choose_incident_staff(
    *,
    grid_code: str | None,
    community_code: str | None,
    reporter_id: str | None,
    assigned_workers: list[str],
    open_incidents: Mapping[str, int],
) -> IncidentStaffing:
    """Pick the responsible worker of an incident's grid.

    The reporter when they are assigned to the grid (定人定责: who found it handles it);
    otherwise the assigned worker with the fewest open incidents, ties to the smallest id;
    a grid with nobody assigned escalates to its community rather than dropping it.
    """
    if grid_code is None:
        return IncidentStaffing(None, None, "outside_area")
    if reporter_id is not None and reporter_id in assigned_workers:
        return IncidentStaffing(reporter_id, None, "reporter_assigned")
    if assigned_workers:
        chosen = min(assigned_workers, key=lambda w: (open_incidents.get(w, 0), w))
        return IncidentStaffing(chosen, None, "fewest_open_incidents")
    return IncidentStaffing(None, community_code, "no_worker_escalated_to_community")
