"""Check-ins: decode, assign to a grid (vectorised), flag, store, republish."""

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import psycopg

from event_consumers import metrics
from event_consumers.coverage import CoverageRecorder, CoverageRows
from event_consumers.grid_snapshot import batch_snapshot
from event_consumers.records import InboundRecord, OutboundRecord, dead_letter
from geodata.contract import Topics
from geodata.crs import to_wgs84
from geodata.db import coverage_store, event_store
from geodata.db.grid_cache import GridSnapshotCache
from geodata.events import (
    DEFAULT_TIME_LIMITS,
    CheckIn,
    EventRefused,
    EventTimeLimits,
    RefusalReason,
    parse_checkin,
)
from geodata.quality import MOCKED, Fix, flag_fixes
from geodata.records import CheckinAssignments
from geodata.spatial_index import to_epoch_us

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class PreparedCheckins:
    """A decoded, assigned and formatted batch, waiting to be written."""

    refused: list[OutboundRecord]
    duplicates: int
    rows: str
    #: (event id, rule, flags) of each accepted check-in, in input order.
    accepted: list[tuple[str, str, list[str]]]
    #: Its assignment, produced only if the row turns out to be new.
    assignments: list[OutboundRecord]
    #: Covered cells to OR in (a repeat sets bits already set: no new-id check needed).
    coverage: CoverageRows = field(default_factory=CoverageRows)


class CheckinHandler:
    """Assigns every check-in to its grid; the poster is its staff member."""

    def __init__(
        self,
        grids: GridSnapshotCache,
        topics: Topics,
        max_bytes: int = 64 * 1024,
        limits: EventTimeLimits = DEFAULT_TIME_LIMITS,
        coverage: CoverageRecorder | None = None,
    ) -> None:
        self.topic = topics.checkins
        self.coverage = coverage
        self.topics = topics
        self.grids = grids
        self.max_bytes = max_bytes
        self.limits = limits
        # Last fix per worker seen by this process; a miss is loaded from the database.
        self._last_fix: dict[str, Fix] = {}
        self._assignments_of = CheckinAssignments(topics.assignments)

    def reset(self) -> None:
        """Forget per-process state after a rolled-back batch."""
        self._last_fix.clear()
        if self.coverage is not None:
            self.coverage.reset()

    def handle(
        self, records: Sequence[InboundRecord], conn: psycopg.Connection, now: datetime
    ) -> list[OutboundRecord]:
        """Store the batch's valid check-ins once each and return what to produce."""
        return self.write(self.prepare(records, conn, now), conn)

    def prepare(
        self, records: Sequence[InboundRecord], conn: psycopg.Connection, now: datetime
    ) -> "PreparedCheckins":
        """Decode, refuse, assign, flag and format a batch: all but the writing.

        `conn` is only read from, so the runner may prepare the next batch while the
        previous one is written on another connection.
        """
        snapshot = batch_snapshot(self.grids)
        roster = snapshot.roster
        refused: list[OutboundRecord] = []
        accepted: list[InboundRecord] = []
        checkins: list[CheckIn] = []
        seen: set[object] = set()
        duplicates = 0
        for record in records:
            try:
                checkin = parse_checkin(
                    record.value or b"", now=now, max_bytes=self.max_bytes, limits=self.limits
                )
            except EventRefused as refusal:
                self._refuse(record, refusal.reason, refusal.detail, refused)
                continue
            if not roster.is_known(checkin.worker_id):
                detail = f"no worker {checkin.worker_id}"
                self._refuse(record, RefusalReason.UNKNOWN_WORKER, detail, refused)
                continue
            if checkin.event_id in seen:
                duplicates += 1
                continue
            seen.add(checkin.event_id)
            accepted.append(record)
            checkins.append(checkin)
        if not checkins:
            return PreparedCheckins(refused, duplicates, "", [], [])

        n = len(checkins)
        lon, lat = self._wgs84(checkins)
        at_us = np.fromiter((to_epoch_us(c.recorded_at) for c in checkins), np.int64, n)
        located = snapshot.index.locate(lon, lat, at_us.astype("datetime64[us]"))
        flags = self._flags(checkins, lon, lat, at_us, conn)
        codes: list[str | None] = located.codes.tolist()
        batch = event_store.CheckinBatch(
            event_ids=[str(c.event_id) for c in checkins],
            worker_ids=[c.worker_id for c in checkins],
            recorded_at=[c.recorded_at for c in checkins],
            lon=[c.lon for c in checkins],
            lat=[c.lat for c in checkins],
            crs=[c.crs for c in checkins],
            accuracy_m=[c.accuracy_m for c in checkins],
            wgs_lon=lon.tolist(),
            wgs_lat=lat.tolist(),
            grid_codes=codes,
            in_assigned_grid=[
                roster.is_assigned(c.worker_id, code, c.recorded_at)
                for c, code in zip(checkins, codes, strict=True)
            ],
            assignment_rules=[str(rule) for rule in located.rules.tolist()],
            flags=flags,
        )
        return PreparedCheckins(
            refused,
            duplicates,
            event_store.format_checkins(batch),
            list(zip(batch.event_ids, batch.assignment_rules, flags, strict=True)),
            self._assignments(accepted, checkins, batch),
            self.coverage.rows(snapshot.index, batch) if self.coverage else CoverageRows(),
        )

    def write(self, prepared: "PreparedCheckins", conn: psycopg.Connection) -> list[OutboundRecord]:
        """Store a prepared batch in the caller's transaction; return what to produce."""
        new_ids = event_store.insert_formatted_checkins(conn, prepared.rows)
        coverage_store.add(conn, prepared.coverage.lattices, prepared.coverage.days)
        stored = len(prepared.accepted)
        metrics.EVENTS_DUPLICATE.labels(self.topic).inc(prepared.duplicates + stored - len(new_ids))
        outgoing = list(prepared.refused)
        by_rule: Counter[str] = Counter()
        by_flag: Counter[str] = Counter()
        for (event_id, rule, flags), assignment in zip(
            prepared.accepted, prepared.assignments, strict=True
        ):
            if event_id in new_ids:
                outgoing.append(assignment)
                by_rule[rule] += 1
                for flag in flags:
                    by_flag[flag] += 1
        for rule, count in by_rule.items():
            metrics.EVENTS_ASSIGNED.labels(self.topic, rule).inc(count)
        for flag, count in by_flag.items():
            metrics.EVENTS_FLAGGED.labels(self.topic, flag).inc(count)
        return outgoing

    def _refuse(
        self,
        record: InboundRecord,
        reason: RefusalReason,
        detail: str,
        outgoing: list[OutboundRecord],
    ) -> None:
        outgoing.append(dead_letter(record, reason, detail, self.topics.deadletter))
        metrics.EVENTS_REFUSED.labels(self.topic, reason).inc()

    def _assignments(
        self,
        accepted: list[InboundRecord],
        checkins: list[CheckIn],
        batch: event_store.CheckinBatch,
    ) -> list[OutboundRecord]:
        """The assignment of each accepted check-in, in input order."""
        return self._assignments_of.records(
            [record.value or b"" for record in accepted],
            checkins,
            event_ids=batch.event_ids,
            grid_codes=batch.grid_codes,
            in_assigned_grid=batch.in_assigned_grid,
            rules=batch.assignment_rules,
            flags=batch.flags,
            assigned_at=datetime.now(UTC),
        )

    @staticmethod
    def _wgs84(checkins: list[CheckIn]) -> tuple[FloatArray, FloatArray]:
        lon = np.fromiter((c.lon for c in checkins), dtype=float, count=len(checkins))
        lat = np.fromiter((c.lat for c in checkins), dtype=float, count=len(checkins))
        crs = np.array([c.crs for c in checkins], dtype=object)
        for name in set(crs.tolist()) - {"EPSG:4326", "EPSG:4490"}:
            mask = crs == name
            lon[mask], lat[mask] = to_wgs84(lon[mask], lat[mask], name)
        return lon, lat

    def _flags(
        self,
        checkins: list[CheckIn],
        lon: FloatArray,
        lat: FloatArray,
        at_us: npt.NDArray[np.int64],
        conn: psycopg.Connection,
    ) -> list[list[str]]:
        """Accuracy and speed flags of the batch (`quality.flag_fixes`), and `mocked`.

        Each worker's newest fix before the batch comes from this process's memory, or
        from the database the first time the worker is seen.
        """
        workers = [c.worker_id for c in checkins]
        missing = set(workers) - self._last_fix.keys()
        if missing:
            self._last_fix.update(event_store.last_fixes(conn, missing))
        accuracy = np.fromiter(
            (np.nan if c.accuracy_m is None else c.accuracy_m for c in checkins),
            float,
            len(checkins),
        )
        recorded_at = [c.recorded_at for c in checkins]
        flagged = flag_fixes(workers, recorded_at, at_us, lon, lat, accuracy, self._last_fix)
        self._last_fix.update(flagged.latest)
        for checkin, its_flags in zip(checkins, flagged.flags, strict=True):
            if checkin.mock:
                its_flags.append(MOCKED)
        return flagged.flags
