"""The compliance stage's cost per check-in on a Monday and on a Sunday of the same week.

The same workers walk every day of a week (each worker's first walk of the simulated week,
moved to each day at the same hour, as new events). The storage stage turns the fixes
into assignments untimed; the compliance stage (`ComplianceHandler`, in this process,
one committed transaction per batch as the runner does) is timed on Monday's, then fed
Tuesday's to Saturday's untimed, then timed on Sunday's. The first batch of a day is left
out: it moves the watermark past midnight, which re-evaluates every worker once a day.
Part of `wangge.benchmarks.compliance`; run it after the consumers have stopped.
"""

import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np
import psycopg

from event_consumers.checkins import CheckinHandler
from event_consumers.compliance import ComplianceHandler
from event_consumers.records import InboundRecord
from geodata.contract import Topics
from geodata.dataset.layers import LOCAL_TZ
from geodata.db.engine import create_db_engine
from geodata.db.grid_cache import GridSnapshotCache
from wangge.benchmarks.compliance_week import WeekPlan
from wangge.benchmarks.history_load import vacuum_analyze

BATCH = 500
DAY_S = 86_400
TOPICS = Topics()


@dataclass(frozen=True)
class DayCosts:
    """Compliance-stage cost per check-in on Monday and on Sunday, in microseconds."""

    workers: int
    monday_events: int
    sunday_events: int
    monday_us: float
    sunday_us: float

    @property
    def ratio(self) -> float:
        """Sunday's cost over Monday's (target ≤ 1.2)."""
        return self.sunday_us / self.monday_us


def daily_walks(plan: WeekPlan, weeks_later: int, seed: int) -> list[WeekPlan]:
    """Seven plans, Monday first: each walking worker's first walk moved to that day of the
    week `weeks_later` weeks after the plan's, at the same hour, as new events."""
    first_day = (plan.at_s - plan.at_s.min()) // DAY_S  # days since the plan's first fix
    keep = np.zeros(len(plan), dtype=bool)
    for index in np.unique(plan.worker).tolist():
        mine = plan.worker == index
        keep |= mine & (first_day == first_day[mine].min())
    monday = int(plan.at_s.min()) - int(plan.at_s.min() + _offset_s()) % DAY_S
    # Each walk's time of day, from local midnight; then put on the chosen day.
    of_day = (plan.at_s[keep] - monday) % DAY_S
    week0 = monday + 7 * DAY_S * weeks_later
    rng = np.random.default_rng(seed)
    days = []
    for day in range(7):
        at_s = week0 + day * DAY_S + of_day
        order = np.lexsort((plan.worker[keep], at_s))
        days.append(
            replace(
                plan,
                worker=plan.worker[keep][order],
                at_s=at_s[order],
                lon=plan.lon[keep][order],
                lat=plan.lat[keep][order],
                accuracy=plan.accuracy[keep][order],
                ids=rng.bytes(16 * int(keep.sum())),
            )
        )
    return days


def _offset_s() -> int:
    offset = datetime(2020, 9, 7, tzinfo=LOCAL_TZ).utcoffset() or timedelta(0)
    return int(offset.total_seconds())


def measure_day_costs(url: str, plan: WeekPlan, weeks_later: int, seed: int) -> DayCosts:
    """Feed a week of daily walks to the compliance stage; time Monday's and Sunday's."""
    days = daily_walks(plan, weeks_later, seed)
    engine = create_db_engine(url)
    try:
        grids = GridSnapshotCache(engine)
        storage = CheckinHandler(grids, TOPICS)
        compliance = ComplianceHandler(grids, TOPICS)
        with psycopg.connect(url) as conn:
            spent = []
            for number, day in enumerate(days):
                if number in (0, 6):
                    # This machine's PostgreSQL runs without autovacuum; in five days a
                    # city's would have analysed the week's growing tables, and replanned
                    # the statements this connection prepared on Monday.
                    vacuum_analyze(url)
                spent.append(_feed(conn, storage, compliance, day))
    finally:
        engine.dispose()
    (monday_s, monday_n), (sunday_s, sunday_n) = spent[0], spent[6]
    return DayCosts(
        workers=len(np.unique(days[0].worker)),
        monday_events=monday_n,
        sunday_events=sunday_n,
        monday_us=monday_s / monday_n * 1e6,
        sunday_us=sunday_s / sunday_n * 1e6,
    )


def _feed(
    conn: psycopg.Connection,
    storage: CheckinHandler,
    compliance: ComplianceHandler,
    day: WeekPlan,
) -> tuple[float, int]:
    """Store a day's fixes, fold their assignments in; seconds and events after batch one."""
    now = datetime.fromtimestamp(int(day.at_s.max()), tz=LOCAL_TZ) + timedelta(minutes=1)
    messages = list(day.messages())
    spent, events = 0.0, 0
    for n, start in enumerate(range(0, len(messages), BATCH)):
        inbound = [
            InboundRecord(TOPICS.checkins, 0, start + i, 0, key, value)
            for i, (key, value) in enumerate(messages[start : start + BATCH])
        ]
        with conn.transaction():
            out = storage.handle(inbound, conn, now)
        assignments = [
            InboundRecord(r.topic, 0, i, 0, r.key, r.value)
            for i, r in enumerate(out)
            if r.topic == TOPICS.assignments
        ]
        began = time.perf_counter()
        with conn.transaction():
            compliance.handle(assignments, conn, now)
        if n > 0:
            spent += time.perf_counter() - began
            events += len(assignments)
    return spent, events
