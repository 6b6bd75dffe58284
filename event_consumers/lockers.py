"""Cloud lockers' drop-offs: checked against the registry, each becomes an incident report.

The report goes to `grid.incidents.v1`, where the incident consumer files it like any
other (grid, worker, deadline, status outbox): a locker's task is built on the incident
workflow, not beside it (docs/LOCKERS.md).
"""

import json
from collections.abc import Sequence
from datetime import datetime

import psycopg

from event_consumers import metrics
from event_consumers.records import InboundRecord, OutboundRecord, dead_letter
from geodata.contract import INCIDENTS_TOPIC, Topics
from geodata.db import locker_store
from geodata.events import (
    CE_TYPES,
    DEFAULT_TIME_LIMITS,
    MAX_EVENT_BYTES,
    EventRefused,
    EventTimeLimits,
    cloudevent_headers,
)
from geodata.lockers import LockerDropOff, check_against, locker_report
from geodata.records import CONSUMERS_SOURCE


class LockerHandler:
    """Stores each drop-off once and produces the incident report it becomes."""

    def __init__(
        self,
        topics: Topics,
        max_bytes: int = MAX_EVENT_BYTES,
        limits: EventTimeLimits = DEFAULT_TIME_LIMITS,
    ) -> None:
        self.topic = topics.locker_dropoffs
        self.topics = topics
        self.max_bytes = max_bytes
        self.limits = limits

    def reset(self) -> None:
        """Nothing is kept between batches."""

    def handle(
        self, records: Sequence[InboundRecord], conn: psycopg.Connection, now: datetime
    ) -> list[OutboundRecord]:
        """Store the batch's valid drop-offs and return their reports and dead letters."""
        outgoing: list[OutboundRecord] = []
        parsed: list[tuple[InboundRecord, LockerDropOff]] = []
        for record in records:
            try:
                dropoff = LockerDropOff.parse(
                    record.value or b"", now=now, limits=self.limits, max_bytes=self.max_bytes
                )
            except EventRefused as refused:
                outgoing.append(self._refuse(record, refused))
                continue
            parsed.append((record, dropoff))
        lockers = locker_store.lockers_by_id(conn, (d.locker_id for _, d in parsed))
        accepted: list[LockerDropOff] = []
        for record, dropoff in parsed:
            locker = lockers.get(dropoff.locker_id)
            try:
                check_against(dropoff, locker)
            except EventRefused as refused:
                outgoing.append(self._refuse(record, refused))
                continue
            assert locker is not None  # check_against refused a missing one
            accepted.append(dropoff)
            # Produced again for a redelivered drop-off: the incident consumer stores a
            # report's event id once, and a report lost after this batch's commit is
            # produced anew only this way.
            report = locker_report(dropoff, locker)
            outgoing.append(
                OutboundRecord(
                    self.topics.incidents,
                    report["incident_id"].encode(),
                    json.dumps(report, ensure_ascii=False, separators=(",", ":")).encode(),
                    cloudevent_headers(
                        event_id=report["event_id"],
                        ce_type=CE_TYPES[INCIDENTS_TOPIC],
                        source=CONSUMERS_SOURCE,
                        time=dropoff.dropped_at,
                    ),
                )
            )
        locker_store.record_dropoffs(conn, accepted)
        return outgoing

    def _refuse(self, record: InboundRecord, refused: EventRefused) -> OutboundRecord:
        metrics.EVENTS_REFUSED.labels(self.topic, refused.reason).inc()
        return dead_letter(record, refused.reason, refused.detail, self.topics.deadletter)
