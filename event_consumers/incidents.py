"""Incident reports: assign to a grid and a responsible worker, or escalate."""

import json
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import psycopg

from event_consumers import metrics
from event_consumers.grid_snapshot import batch_snapshot
from event_consumers.records import InboundRecord, OutboundRecord, dead_letter
from geodata.categories import normalize_category
from geodata.contract import Topics
from geodata.crs import to_wgs84
from geodata.db import (
    attachment_store,
    deadline_store,
    duplicate_store,
    event_store,
    incident_outbox,
)
from geodata.db.grid_cache import GridSnapshotCache
from geodata.duplicates import DuplicateRule
from geodata.events import (
    DEFAULT_TIME_LIMITS,
    EventRefused,
    EventTimeLimits,
    IncidentReport,
    RefusalReason,
    parse_incident,
)
from geodata.hierarchy import lineage_of
from geodata.incident_status import reported_change
from geodata.incidents import Status
from geodata.records import assignment_record
from geodata.staffing import choose_incident_staff

UNKNOWN_CATEGORY_FLAG = "unknown_category"


class IncidentHandler:
    """Stores each incident with its grid and staff member (or community escalation)."""

    def __init__(
        self,
        grids: GridSnapshotCache,
        topics: Topics,
        max_bytes: int = 64 * 1024,
        limits: EventTimeLimits = DEFAULT_TIME_LIMITS,
        duplicates: DuplicateRule | None = None,
    ) -> None:
        self.topic = topics.incidents
        self.duplicates = duplicates or DuplicateRule()
        self.topics = topics
        self.grids = grids
        self.max_bytes = max_bytes
        self.limits = limits

    def reset(self) -> None:
        """Nothing is kept between batches."""

    def handle(
        self, records: Sequence[InboundRecord], conn: psycopg.Connection, now: datetime
    ) -> list[OutboundRecord]:
        """Store the batch's valid incidents once each and return what to produce."""
        snapshot = batch_snapshot(self.grids)
        outgoing: list[OutboundRecord] = []
        accepted: list[tuple[InboundRecord, IncidentReport]] = []
        for record in records:
            try:
                accepted.append(
                    (
                        record,
                        parse_incident(
                            record.value or b"",
                            now=now,
                            max_bytes=self.max_bytes,
                            limits=self.limits,
                        ),
                    )
                )
            except EventRefused as refused:
                outgoing.append(
                    dead_letter(record, refused.reason, refused.detail, self.topics.deadletter)
                )
                metrics.EVENTS_REFUSED.labels(self.topic, refused.reason).inc()
        if not accepted:
            return outgoing

        roster = snapshot.roster
        rows: list[event_store.StoredIncident] = []
        # Open incidents per worker, including the ones this batch hands out.
        open_counts: Counter[str] = Counter()
        counted_workers: set[str] = set()
        for record, report in accepted:
            wgs_lon, wgs_lat = to_wgs84(np.array([report.lon]), np.array([report.lat]), report.crs)
            at = np.array(
                [report.reported_at.astimezone(UTC).replace(tzinfo=None)], "datetime64[us]"
            )
            located = snapshot.index.locate(wgs_lon, wgs_lat, at)
            code = located.codes[0]
            workers = roster.workers_of(code, report.reported_at) if code else []
            uncounted = set(workers) - counted_workers
            if uncounted:
                open_counts.update(event_store.open_incident_counts(conn, uncounted))
                counted_workers |= uncounted
            community = lineage_of(code).community_code if code else None
            staffing = choose_incident_staff(
                grid_code=code,
                community_code=community,
                reporter_id=report.reporter_id,
                assigned_workers=workers,
                open_incidents=open_counts,
            )
            if staffing.staff_id:
                open_counts[staffing.staff_id] += 1
            category, unknown = normalize_category(report.category)
            payload = json.loads(record.value or b"{}")
            rows.append(
                event_store.StoredIncident(
                    incident_id=report.incident_id,
                    event_id=report.event_id,
                    category=category,
                    description=report.description,
                    source=report.source,
                    reporter_id=report.reporter_id,
                    reported_at=report.reported_at,
                    lon=report.lon,
                    lat=report.lat,
                    wgs_lon=float(wgs_lon[0]),
                    wgs_lat=float(wgs_lat[0]),
                    grid_code=code,
                    community_code=community,
                    staff_id=staffing.staff_id,
                    assignment_rule=str(located.rules[0]),
                    escalated_to=staffing.escalated_to,
                    flags=[UNKNOWN_CATEGORY_FLAG] if unknown else [],
                    payload=payload,
                )
            )
        new_ids = event_store.insert_incidents(conn, rows)
        attachment_store.link_report_photos(
            conn,
            (
                (row.incident_id, row.reporter_id, report.attachments)
                for (_record, report), row in zip(accepted, rows, strict=True)
                if row.event_id in new_ids and report.attachments
            ),
        )
        not_new = [row.event_id for row in rows if row.event_id not in new_ids]
        # Not new: a retry of a stored event (skipped), or another event that reuses a
        # stored incident's id, which would be lost without a word: it is refused.
        retried = event_store.stored_incident_events(conn, not_new)
        for (record, _report), row in zip(accepted, rows, strict=True):
            if row.event_id in new_ids or row.event_id in retried:
                continue
            detail = f"incident_id {row.incident_id} belongs to another report"
            outgoing.append(
                dead_letter(record, RefusalReason.INCIDENT_EXISTS, detail, self.topics.deadletter)
            )
            metrics.EVENTS_REFUSED.labels(self.topic, RefusalReason.INCIDENT_EXISTS).inc()
        metrics.EVENTS_DUPLICATE.labels(self.topic).inc(len(retried))
        # A report that repeats an open case nearby is linked to it in this transaction
        # (geodata.duplicates): the supervisor confirms or splits the link.
        duplicate_store.link_filed_reports(
            conn,
            self.duplicates,
            [
                duplicate_store.FiledReport(
                    row.incident_id, row.category, row.wgs_lon, row.wgs_lat, row.reported_at
                )
                for row in rows
                if row.event_id in new_ids
            ],
        )
        # The filing begins the dispatch stage: its due time counts from the report's time.
        deadlines = deadline_store.load_table(conn)
        dues = {
            row.incident_id: deadlines.due_at(row.category, Status.REPORTED, row.reported_at)
            for row in rows
            if row.event_id in new_ids
        }
        deadline_store.set_due(conn, dues.items())
        # The filing is the incident's first status change, published from the outbox once
        # this batch commits; a retried event filed nothing new and queues nothing.
        incident_outbox.queue_changes(
            conn,
            [
                reported_change(
                    incident_id=row.incident_id,
                    category=row.category,
                    grid_code=row.grid_code,
                    community_code=row.community_code,
                    assignee=row.staff_id,
                    escalated_to=row.escalated_to,
                    lon=row.wgs_lon,
                    lat=row.wgs_lat,
                    reported_at=row.reported_at,
                    due_at=dues[row.incident_id],
                )
                for row in rows
                if row.event_id in new_ids
            ],
        )
        assigned_at = datetime.now(UTC)
        for row in rows:
            if row.event_id not in new_ids:
                continue
            metrics.EVENTS_ASSIGNED.labels(self.topic, row.assignment_rule).inc()
            for flag in row.flags:
                metrics.EVENTS_FLAGGED.labels(self.topic, flag).inc()
            outgoing.append(
                assignment_record(
                    self.topics.assignments,
                    row.payload,
                    kind="incident",
                    grid_code=row.grid_code,
                    staff_id=row.staff_id,
                    in_assigned_grid=None,
                    rule=row.assignment_rule,
                    flags=row.flags,
                    assigned_at=assigned_at,
                    extra={"escalated_to": row.escalated_to, "category_normalized": row.category},
                )
            )
        return outgoing
