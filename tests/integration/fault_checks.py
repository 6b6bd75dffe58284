"""What the fault matrix measures after a fault: topics read back, the compliance stage's state."""

import json
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg

from geodata.compliance import CheckinRecord, ComplianceConfig
from geodata.staffing import AssignmentPeriod
from tests.integration.pipeline_support import read_topic
from tests.reference_compliance import reference_week

WEEK = "2020-W37"


@dataclass
class Figures:
    """One row of the fault matrix."""

    scenario: str
    accepted: int
    stored: int
    lost: int
    duplicated_on_topic: int
    recovery_s: float | None
    drain_s: float | None
    details: dict[str, object] = field(default_factory=dict)

    def line(self) -> str:
        """The row as one line of pytest's output."""
        recovery = "never" if self.recovery_s is None else f"{self.recovery_s:.1f}"
        drain = "never" if self.drain_s is None else f"{self.drain_s:.1f}"
        return (
            f"fault-matrix {self.scenario}: accepted={self.accepted} stored={self.stored}"
            f" lost={self.lost} duplicated_on_topic={self.duplicated_on_topic}"
            f" recovery_s={recovery} drain_s={drain} {json.dumps(self.details, default=str)}"
        )


def write_matrix(path: Path, rows: list[Figures]) -> None:
    """Every row so far, as JSON (rewritten after each scenario, so a failure keeps them)."""
    path.write_text(json.dumps([asdict(r) for r in rows], indent=2, default=str))


def repeated_event_ids(bootstrap: str, topic: str) -> tuple[int, int]:
    """(records, records beyond the first of their event_id) in a topic, read back whole."""
    records = read_topic(bootstrap, topic, timeout=60)
    ids = Counter(json.loads(r.value)["event_id"] for r in records)  # type: ignore[attr-defined]
    return len(records), sum(n - 1 for n in ids.values())


def folded_ids(database_url: str, event_ids: list[str]) -> set[str] | None:
    """Which of `event_ids` the compliance stage holds; None while the database is down."""
    try:
        with psycopg.connect(database_url, connect_timeout=3) as conn:
            rows = conn.execute(
                "SELECT event_id::text FROM patrol_checkins WHERE event_id = ANY(%s::uuid[])",
                (event_ids,),
            ).fetchall()
    except psycopg.OperationalError:
        return None
    return {str(r[0]) for r in rows}


def unpublished_changes(database_url: str) -> int | None:
    """Status changes the outbox has not published yet; None while the database is down."""
    try:
        with psycopg.connect(database_url, connect_timeout=3) as conn:
            row = conn.execute(
                "SELECT count(*) FROM compliance_changes WHERE published_at IS NULL"
            ).fetchone()
    except psycopg.OperationalError:
        return None
    return int(row[0]) if row else 0


def duplicated_patrols(database_url: str) -> int:
    """Patrol rows beyond the first of their (worker, grid, start): no constraint forbids them."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) - count(DISTINCT (worker_id, grid_code, started_at)) FROM patrols"
        ).fetchone()
    return int(row[0]) if row else 0


def compliance_disagreements(database_url: str, workers: list[str]) -> list[str]:
    """Where the engine's patrols and counts differ from the reference's, recomputed from
    the check-ins the engine holds; empty when they agree.

    Statuses are left out: a key's status is as of the last batch that touched it, while
    its patrols and counts depend only on its check-ins.
    """
    config = ComplianceConfig()
    with psycopg.connect(database_url) as conn:
        records = [
            CheckinRecord(uuid.UUID(str(e)), str(w), g, t, a)
            for e, w, g, t, a in conn.execute(
                "SELECT event_id, worker_id, grid_code, recorded_at, accuracy_m"
                " FROM patrol_checkins WHERE NOT late AND worker_id = ANY(%s)",
                (workers,),
            ).fetchall()
        ]
        periods = [
            AssignmentPeriod(w, g, f, t)
            for w, g, f, t in conn.execute(
                "SELECT worker_id, grid_code, valid_from, valid_to FROM worker_assignments"
                " WHERE worker_id = ANY(%s)",
                (workers,),
            ).fetchall()
        ]
        weeks = {
            (w, g): (counted, required)
            for w, g, counted, required in conn.execute(
                "SELECT worker_id, grid_code, counted, required FROM patrol_weeks"
                " WHERE week = %s AND worker_id = ANY(%s)",
                (WEEK, workers),
            ).fetchall()
        }
        patrols: dict[tuple[str, str], list[tuple[object, ...]]] = {}
        for w, g, start, end, n, valid, counted in conn.execute(
            "SELECT worker_id, grid_code, started_at, ended_at, checkin_count, valid, counted"
            " FROM patrols WHERE week = %s AND worker_id = ANY(%s) ORDER BY started_at",
            (WEEK, workers),
        ).fetchall():
            patrols.setdefault((w, g), []).append((start, end, n, valid, counted))
        clock = conn.execute("SELECT watermark FROM compliance_clock").fetchone()
    if not records:
        return ["the compliance stage holds no check-in of the phones' workers"]
    watermark: datetime = clock[0] if clock else max(r.recorded_at for r in records)
    problems = []
    for worker, grid in sorted({(r.worker_id, r.grid_code) for r in records if r.grid_code}):
        expected = reference_week(records, periods, worker, grid, WEEK, watermark, config)
        got = weeks.get((worker, grid))
        if got != (expected.counted, expected.required):
            problems.append(
                f"{worker}/{grid}: counted, required {got},"
                f" reference {(expected.counted, expected.required)}"
            )
        want = [
            (p.start, p.end, p.checkins, p.validity == "valid", p.count_reason == "counted")
            for p in expected.patrols
        ]
        stored = patrols.get((worker, grid), [])
        if stored != want:
            problems.append(
                f"{worker}/{grid}: {len(stored)} patrols stored, {len(want)} by the reference"
            )
    return problems
