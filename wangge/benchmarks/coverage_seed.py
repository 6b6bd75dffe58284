"""A seeded week of coverage: walks through the real storage stage and compliance stage.

Used by `wangge bench coverage` and the coverage tests. The reference database gets
2020-W37's walks (the compliance benchmark's planner, for a sample of workers or all);
the check-ins go through `CheckinHandler` (which ORs covered cells in) and their
assignments through `ComplianceHandler` (which writes the counted patrols), each batch in
its own transaction, as the runner would, without a broker in between.
"""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy import Engine

from event_consumers.checkins import CheckinHandler
from event_consumers.compliance import ComplianceHandler
from event_consumers.coverage import CoverageRecorder
from event_consumers.records import InboundRecord
from geodata.contract import Topics
from geodata.db.engine import libpq_url
from geodata.db.grid_cache import GridSnapshotCache
from wangge.benchmarks.compliance_week import WeekPlan, plan_week

TOPICS = Topics()
WEEK_TZ = ZoneInfo("Asia/Shanghai")


def records_of(plan: WeekPlan, topic: str) -> list[InboundRecord]:
    """The plan's fixes as the intake stage reads them."""
    return [
        InboundRecord(topic, 0, offset, 0, key, value)
        for offset, (key, value) in enumerate(plan.messages())
    ]


def run_storage(
    engine: Engine, handler: CheckinHandler, records: list[InboundRecord], now: datetime
) -> list[InboundRecord]:
    """One storage-stage batch, committed; its assignments as the compliance stage reads them."""
    with psycopg.connect(libpq_url(engine.url.render_as_string(hide_password=False))) as conn:
        out = handler.handle(records, conn, now)
    return [
        InboundRecord(r.topic, 0, i, 0, r.key, r.value)
        for i, r in enumerate(out)
        if r.topic == TOPICS.assignments
    ]


def run_compliance(
    engine: Engine, handler: ComplianceHandler, records: list[InboundRecord], now: datetime
) -> None:
    """One compliance-stage batch, committed."""
    with psycopg.connect(libpq_url(engine.url.render_as_string(hide_password=False))) as conn:
        handler.handle(records, conn, now)


def seed_week(engine: Engine, url: str, workers: int | None, seed: int = 15) -> WeekPlan:
    """Walk `workers` workers (None: all) through 2020-W37 and fold the walks into patrols."""
    plan = plan_week(url, workers=workers, fix_interval_s=60, seed=seed)
    now = datetime.fromtimestamp(int(plan.at_s.max()), tz=WEEK_TZ) + timedelta(hours=1)
    grids = GridSnapshotCache(engine)
    storage = CheckinHandler(grids, TOPICS, coverage=CoverageRecorder())
    assignments = run_storage(engine, storage, records_of(plan, TOPICS.checkins), now)
    run_compliance(engine, ComplianceHandler(grids, TOPICS), assignments, now)
    return plan
