"""Reads for the simulator: the city to simulate, and what the platform made of a week."""

from collections import defaultdict
from datetime import datetime

import shapely
from sqlalchemy import Engine, func, or_, select

from geodata.compliance import ComplianceConfig, IsoWeek, checkin_window
from geodata.compliance.report import WorkerCompliance
from geodata.db.compliance_read import compliance_report
from geodata.db.compliance_store import CLOCK_NAME
from geodata.db.models import (
    ComplianceClock,
    Grid,
    Patrol,
    PatrolCheckin,
    PatrolWeek,
    Worker,
    WorkerAssignment,
)
from geodata.staffing import AssignmentPeriod
from wangge.simulation.compare import ObservedPatrol, ObservedStatus, PlatformWeek
from wangge.simulation.plan import SimWorker, World
from wangge.simulation.truth import Truth


def load_world(engine: Engine, start: datetime, until: datetime) -> tuple[World, int]:
    """Grids unchanged over [start, until), and the workers to simulate; and how many were left out.

    A worker is simulated when one assignment covers the whole span and no other
    overlaps it: a worker moving between grids mid-week would need a plan per grid.
    """
    with engine.connect() as conn:
        rows = conn.execute(
            select(Grid.code, func.ST_AsBinary(Grid.geom)).where(
                Grid.valid_from <= start, or_(Grid.valid_to.is_(None), Grid.valid_to >= until)
            )
        ).all()
        grids = dict(
            zip([r[0] for r in rows], shapely.from_wkb([bytes(r[1]) for r in rows]), strict=True)
        )
        periods: dict[str, list[AssignmentPeriod]] = defaultdict(list)
        for worker_id, grid_code, valid_from, valid_to in conn.execute(
            select(
                WorkerAssignment.worker_id,
                WorkerAssignment.grid_code,
                WorkerAssignment.valid_from,
                WorkerAssignment.valid_to,
            )
        ):
            periods[worker_id].append(AssignmentPeriod(worker_id, grid_code, valid_from, valid_to))
        known = frozenset(conn.execute(select(Worker.worker_id)).scalars())
    workers = []
    for worker_id, spans in sorted(periods.items()):
        overlapping = [
            p for p in spans if p.valid_from < until and (p.valid_to is None or p.valid_to > start)
        ]
        whole = [
            p
            for p in overlapping
            if p.valid_from <= start and (p.valid_to is None or p.valid_to >= until)
        ]
        if len(overlapping) == 1 and whole and whole[0].grid_code in grids:
            workers.append(SimWorker(worker_id, whole[0].grid_code, tuple(spans)))
    left_out = len(periods) - len(workers)
    return World(grids=grids, workers=tuple(workers), known_workers=known), left_out


def read_platform(
    engine: Engine, truth: Truth, config: ComplianceConfig | None = None
) -> PlatformWeek:
    """The platform's statuses (as of the truth's time), patrols and check-ins of its workers."""
    config = config or ComplianceConfig()
    week: IsoWeek = truth.week
    workers = sorted({e.worker_id for e in truth.entries})
    report = compliance_report(engine, week, truth.as_of, level="worker", config=config)
    wanted = set(workers)
    statuses = {
        (item.worker_id, item.grid_code): ObservedStatus(item.status, item.counted, item.required)
        for item in report.items
        if isinstance(item, WorkerCompliance) and item.worker_id in wanted
    }
    window_from, window_to = checkin_window(week, config)
    with engine.connect() as conn:
        patrols: dict[tuple[str, str], list[ObservedPatrol]] = defaultdict(list)
        for row in conn.execute(
            select(
                Patrol.worker_id,
                Patrol.grid_code,
                Patrol.started_at,
                Patrol.ended_at,
                Patrol.checkin_count,
                Patrol.valid,
                Patrol.counted,
                Patrol.reason,
            )
            .where(Patrol.week == str(week), Patrol.worker_id.in_(workers))
            .order_by(Patrol.worker_id, Patrol.grid_code, Patrol.started_at)
        ):
            worker_id, grid_code, start, end, checkins, valid, counted, reason = row
            patrols[(worker_id, grid_code)].append(
                ObservedPatrol(start, end, checkins, valid, counted, reason)
            )
        engine_statuses = {
            (w, g): s
            for w, g, s in conn.execute(
                select(PatrolWeek.worker_id, PatrolWeek.grid_code, PatrolWeek.status).where(
                    PatrolWeek.week == str(week), PatrolWeek.worker_id.in_(workers)
                )
            )
        }
        watermark = conn.execute(
            select(ComplianceClock.watermark).where(ComplianceClock.name == CLOCK_NAME)
        ).scalar_one_or_none()
        counts = conn.execute(
            select(
                PatrolCheckin.worker_id,
                func.count(),
                func.count().filter(PatrolCheckin.late),
            )
            .where(
                PatrolCheckin.worker_id.in_(workers),
                PatrolCheckin.recorded_at >= window_from,
                PatrolCheckin.recorded_at < window_to,
            )
            .group_by(PatrolCheckin.worker_id)
        ).all()
    return PlatformWeek(
        statuses=statuses,
        patrols=dict(patrols),
        engine=engine_statuses,
        watermark=watermark,
        checkins={w: int(n) for w, n, _ in counts},
        late={w: int(late) for w, _, late in counts if late},
    )
