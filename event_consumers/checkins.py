"""Check-ins: decode, assign to a grid (vectorised), flag, store, republish."""

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import psycopg

from event_consumers import metrics
from event_consumers.boundaries import BoundaryCache
from event_consumers.records import InboundRecord, OutboundRecord, dead_letter
from geodata.contract import Topics
from geodata.crs import to_wgs84
from geodata.db import event_store
from geodata.events import CheckIn, EventRefused, RefusalReason, parse_checkin
from geodata.hierarchy import lineage_of
from geodata.quality import Fix, quality_flags

logger = logging.getLogger(__name__)


def assignment_record(
    raw: dict[str, object],
    *,
    topic: str,
    grid_code: str | None,
    staff_id: str | None,
    in_assigned_grid: bool | None,
    rule: str,
    flags: list[str],
    assigned_at: str,
    ce_type: str,
    extra: dict[str, object] | None = None,
) -> OutboundRecord:
    """The input event unchanged plus where and to whom it was assigned (EVENTS.md)."""
    lineage = lineage_of(grid_code) if grid_code else None
    body = {
        **raw,
        "grid_code": grid_code,
        "community_code": lineage.community_code if lineage else None,
        "street_code": lineage.street_code if lineage else None,
        "district_code": lineage.district_code if lineage else None,
        "staff_id": staff_id,
        "in_assigned_grid": in_assigned_grid,
        "assignment_rule": rule,
        "assigned_at": assigned_at,
        "flags": flags,
        **(extra or {}),
    }
    event_id = str(raw.get("event_id", ""))
    return OutboundRecord(
        topic=topic,
        key=grid_code.encode() if grid_code else None,
        value=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
        headers=[
            ("ce_specversion", b"1.0"),
            ("ce_id", event_id.encode()),
            ("ce_source", b"wangge/consumers"),
            ("ce_type", ce_type.encode()),
            ("ce_time", assigned_at.encode()),
        ],
    )


class CheckinHandler:
    """Assigns every check-in to its grid; the poster is its staff member."""

    def __init__(
        self, boundaries: BoundaryCache, topics: Topics, max_bytes: int = 64 * 1024
    ) -> None:
        self.topic = topics.checkins
        self.topics = topics
        self.boundaries = boundaries
        self.max_bytes = max_bytes
        # Last fix per worker seen by this process; a miss is loaded from the database.
        self._last_fix: dict[str, Fix] = {}

    def reset(self) -> None:
        """Forget per-process state after a rolled-back batch."""
        self._last_fix.clear()

    def handle(
        self, records: Sequence[InboundRecord], conn: psycopg.Connection, now: datetime
    ) -> list[OutboundRecord]:
        """Store the batch's valid check-ins once each and return what to produce."""
        self.boundaries.refresh_if_changed(conn)
        roster = self.boundaries.roster
        outgoing: list[OutboundRecord] = []
        accepted: list[tuple[InboundRecord, CheckIn]] = []
        seen: set[object] = set()
        duplicates = 0
        for record in records:
            try:
                checkin = parse_checkin(record.value or b"", now=now, max_bytes=self.max_bytes)
            except EventRefused as refused:
                outgoing.append(
                    dead_letter(record, refused.reason, refused.detail, self.topics.deadletter)
                )
                metrics.EVENTS_REFUSED.labels(self.topic, refused.reason).inc()
                continue
            if not roster.is_known(checkin.worker_id):
                reason = RefusalReason.UNKNOWN_WORKER
                detail = f"no worker {checkin.worker_id}"
                outgoing.append(dead_letter(record, reason, detail, self.topics.deadletter))
                metrics.EVENTS_REFUSED.labels(self.topic, reason).inc()
                continue
            if checkin.event_id in seen:
                duplicates += 1
                continue
            seen.add(checkin.event_id)
            accepted.append((record, checkin))
        if not accepted:
            metrics.EVENTS_DUPLICATE.labels(self.topic).inc(duplicates)
            return outgoing

        checkins = [c for _, c in accepted]
        lon, lat = self._wgs84(checkins)
        at = np.array(
            [c.recorded_at.astimezone(UTC).replace(tzinfo=None) for c in checkins],
            dtype="datetime64[us]",
        )
        located = self.boundaries.index.locate(lon, lat, at)
        flags = self._flags(checkins, lon, lat, conn)

        rows = []
        for i, checkin in enumerate(checkins):
            code = located.codes[i]
            rows.append(
                event_store.StoredCheckin(
                    event_id=checkin.event_id,
                    worker_id=checkin.worker_id,
                    recorded_at=checkin.recorded_at,
                    lon=checkin.lon,
                    lat=checkin.lat,
                    crs=checkin.crs,
                    accuracy_m=checkin.accuracy_m,
                    wgs_lon=float(lon[i]),
                    wgs_lat=float(lat[i]),
                    grid_code=code,
                    in_assigned_grid=roster.is_assigned(
                        checkin.worker_id, code, checkin.recorded_at
                    ),
                    assignment_rule=str(located.rules[i]),
                    flags=flags[i],
                )
            )
        new_ids = event_store.insert_checkins(conn, rows)
        duplicates += len(rows) - len(new_ids)
        metrics.EVENTS_DUPLICATE.labels(self.topic).inc(duplicates)

        assigned_at = datetime.now(UTC).isoformat()
        for (record, _checkin), row in zip(accepted, rows, strict=True):
            if row.event_id not in new_ids:
                continue
            metrics.EVENTS_ASSIGNED.labels(self.topic, row.assignment_rule).inc()
            for flag in row.flags:
                metrics.EVENTS_FLAGGED.labels(self.topic, flag).inc()
            outgoing.append(
                assignment_record(
                    json.loads(record.value or b"{}"),
                    topic=self.topics.assignments,
                    grid_code=row.grid_code,
                    staff_id=row.worker_id,
                    in_assigned_grid=row.in_assigned_grid,
                    rule=row.assignment_rule,
                    flags=row.flags,
                    assigned_at=assigned_at,
                    ce_type="wangge.assignment.checkin.v1",
                )
            )
        return outgoing

    @staticmethod
    def _wgs84(checkins: list[CheckIn]) -> tuple[np.ndarray, np.ndarray]:
        lon = np.fromiter((c.lon for c in checkins), dtype=float, count=len(checkins))
        lat = np.fromiter((c.lat for c in checkins), dtype=float, count=len(checkins))
        crs = np.array([c.crs for c in checkins], dtype=object)
        for name in set(crs.tolist()) - {"EPSG:4326", "EPSG:4490"}:
            mask = crs == name
            lon[mask], lat[mask] = to_wgs84(lon[mask], lat[mask], name)
        return lon, lat

    def _flags(
        self, checkins: list[CheckIn], lon: np.ndarray, lat: np.ndarray, conn: psycopg.Connection
    ) -> list[list[str]]:
        """Accuracy and speed flags; each fix is compared with the worker's previous one."""
        missing = {c.worker_id for c in checkins} - self._last_fix.keys()
        if missing:
            self._last_fix.update(event_store.last_fixes(conn, missing))
        flags: list[list[str]] = [[] for _ in checkins]
        order = sorted(range(len(checkins)), key=lambda i: checkins[i].recorded_at)
        for i in order:
            checkin = checkins[i]
            fix = Fix(checkin.recorded_at, float(lon[i]), float(lat[i]))
            previous = self._last_fix.get(checkin.worker_id)
            flags[i] = quality_flags(checkin.accuracy_m, fix, previous)
            if previous is None or fix.recorded_at >= previous.recorded_at:
                self._last_fix[checkin.worker_id] = fix
        return flags
