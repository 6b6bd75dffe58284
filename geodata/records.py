"""Every record wangge produces, built in one place: its key, value and headers.

`geodata.events` holds the models, the rules that accept or refuse an event, the decoders
and the CloudEvents headers; this module turns accepted events into the records the
consumers produce on `grid.assignments.v1`, `grid.compliance.v1` and `grid.deadletter.v1`
(docs/EVENTS.md), and reads back the id a produced record carries. Pure: no Kafka client.
"""

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Self

from pydantic import BaseModel, ConfigDict, Field

from geodata.contract import COMPLIANCE_TOPIC
from geodata.events import (
    ASSIGNMENT_CE_TYPES,
    ASSIGNMENT_FIELDS,
    CE_TYPES,
    AssignmentKind,
    CheckIn,
    ComplianceChange,
    EventRefused,
    RefusalReason,
    cloudevent_headers,
)
from geodata.hierarchy import lineage_of

Headers = list[tuple[str, bytes]]
"""Kafka record headers: (name, value) pairs, in order."""

CONSUMERS_SOURCE: Final = "wangge/consumers"
"""ce_source of the assignments."""
COMPLIANCE_SOURCE: Final = "wangge/compliance"
"""ce_source of the compliance changes."""


@dataclass(frozen=True)
class OutboundRecord:
    """One record to produce: the topic, and the key, value and headers built here."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers = field(default_factory=list)


# --- assignments -------------------------------------------------------------------------


def _json(value: object) -> bytes:
    # Assignments carry text as UTF-8, not \u escapes, in compact JSON.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _lineage_fields(grid_code: str | None) -> dict[str, str | None]:
    lineage = lineage_of(grid_code) if grid_code else None
    return {
        "grid_code": grid_code,
        "community_code": lineage.community_code if lineage else None,
        "street_code": lineage.street_code if lineage else None,
        "district_code": lineage.district_code if lineage else None,
    }


def _key(grid_code: str | None) -> bytes | None:
    # Keyed by grid; an event outside every grid has no key.
    return grid_code.encode() if grid_code else None


def assignment_record(
    topic: str,
    event: Mapping[str, object],
    *,
    kind: AssignmentKind,
    grid_code: str | None,
    staff_id: str | None,
    in_assigned_grid: bool | None,
    rule: str,
    flags: Sequence[str],
    assigned_at: datetime,
    extra: Mapping[str, object] | None = None,
) -> OutboundRecord:
    """The input event's fields unchanged, then where and to whom it was assigned.

    `event` is the input's JSON object as decoded; `extra` fields come last.
    """
    stamp = assigned_at.isoformat()
    body = {
        **event,
        **_lineage_fields(grid_code),
        "staff_id": staff_id,
        "in_assigned_grid": in_assigned_grid,
        "assignment_rule": rule,
        "assigned_at": stamp,
        "flags": list(flags),
        **(extra or {}),
    }
    return OutboundRecord(
        topic=topic,
        key=_key(grid_code),
        value=_json(body),
        headers=cloudevent_headers(
            event_id=str(event.get("event_id", "")),
            ce_type=ASSIGNMENT_CE_TYPES[kind],
            source=CONSUMERS_SOURCE,
            time=stamp,
        ),
    )


class CheckinAssignments:
    """Builds the assignments of check-in batches, the consumer's hot path.

    The input's own bytes are kept and the assignment fields appended to them: no second
    JSON decode and encode of each event, and the JSON of the fields that repeat across
    events (a grid's codes, a worker's id) is made once. For a compact JSON input the
    bytes are exactly `assignment_record`'s, and the model's serialisation for a
    check-in without extra fields (pinned by tests).
    """

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._lineage_json: dict[str | None, bytes] = {}
        self._staff_json: dict[str, bytes] = {}

    def records(
        self,
        values: Sequence[bytes],
        checkins: Sequence[CheckIn],
        *,
        event_ids: Sequence[str],
        grid_codes: Sequence[str | None],
        in_assigned_grid: Sequence[bool],
        rules: Sequence[str],
        flags: Sequence[Sequence[str]],
        assigned_at: datetime,
    ) -> list[OutboundRecord]:
        """The assignment of each check-in (its raw value, parsed model and `event_ids`,
        the models' ids as text), in order."""
        stamp = assigned_at.isoformat()
        # A batch's headers differ only in ce_id; the other (immutable) pairs are shared.
        specversion, (id_header, _), source, ce_type, ce_time = cloudevent_headers(
            event_id="", ce_type=ASSIGNMENT_CE_TYPES["checkin"], source=CONSUMERS_SOURCE, time=stamp
        )
        tail = b',"assigned_at":' + _json(stamp) + b',"flags":'
        topic = self.topic
        out: list[OutboundRecord] = []
        for i, checkin in enumerate(checkins):
            code, rule, its_flags = grid_codes[i], rules[i], flags[i]
            raw = values[i].rstrip()
            extras = checkin.model_extra
            if not raw.endswith(b"}") or (
                extras and not extras.keys().isdisjoint(ASSIGNMENT_FIELDS)
            ):
                # An extra field named like an assignment field: let the dict merge decide.
                out.append(
                    assignment_record(
                        self.topic,
                        json.loads(raw),
                        kind="checkin",
                        grid_code=code,
                        staff_id=checkin.worker_id,
                        in_assigned_grid=in_assigned_grid[i],
                        rule=rule,
                        flags=its_flags,
                        assigned_at=assigned_at,
                    )
                )
                continue
            value = b"".join(
                (
                    raw[:-1],
                    self._lineage_fragment(code),
                    self._staff_fragment(checkin.worker_id),
                    b"true," if in_assigned_grid[i] else b"false,",
                    b'"assignment_rule":"',
                    rule.encode(),
                    b'"',
                    tail,
                    _json(its_flags) if its_flags else b"[]",
                    b"}",
                )
            )
            headers = [specversion, (id_header, event_ids[i].encode()), source, ce_type, ce_time]
            out.append(OutboundRecord(topic, code.encode() if code else None, value, headers))
        return out

    def _lineage_fragment(self, code: str | None) -> bytes:
        """`,"grid_code":…,"district_code":…` for a grid (cached: a few thousand grids)."""
        fragment = self._lineage_json.get(code)
        if fragment is None:
            fragment = b"," + _json(_lineage_fields(code))[1:-1]
            self._lineage_json[code] = fragment
        return fragment

    def _staff_fragment(self, worker_id: str) -> bytes:
        """`,"staff_id":…,"in_assigned_grid":` for a worker (cached per worker)."""
        fragment = self._staff_json.get(worker_id)
        if fragment is None:
            fragment = b',"staff_id":' + _json(worker_id) + b',"in_assigned_grid":'
            self._staff_json[worker_id] = fragment
        return fragment


# --- compliance changes ------------------------------------------------------------------


def compliance_change_record(topic: str, change: ComplianceChange) -> OutboundRecord:
    """A status change keyed by its worker, its fields in the model's order."""
    body = change.model_dump()
    # The times as Python writes them (+00:00, not pydantic's Z), and ASCII-only JSON:
    # the bytes the compliance topic has always carried.
    body["event_id"] = str(change.event_id)
    body["changed_at"] = change.changed_at.isoformat()
    return OutboundRecord(
        topic=topic,
        key=change.worker_id.encode(),
        value=json.dumps(body, separators=(",", ":")).encode(),
        headers=cloudevent_headers(
            event_id=change.event_id,
            ce_type=CE_TYPES[COMPLIANCE_TOPIC],
            source=COMPLIANCE_SOURCE,
            time=change.changed_at,
        ),
    )


def record_event_id(headers: Iterable[tuple[str, bytes | None]], value: bytes | None) -> str:
    """The event id of a record wangge produced: its ce_id header, else its body's event_id."""
    found = dict(headers)
    ce_id = found.get("ce_id")
    if ce_id is not None:
        return ce_id.decode()
    return str(json.loads(value or b"")["event_id"])


# --- dead letters ------------------------------------------------------------------------

DEADLETTER_REASON_HEADER: Final = "error.reason"
DEADLETTER_DETAIL_HEADER: Final = "error.detail"
DEADLETTER_SOURCE_HEADERS: Final = ("source.topic", "source.partition", "source.offset")
MAX_DETAIL_BYTES: Final = 1000
"""Longest error.detail, in UTF-8 bytes: headers stay small whatever went wrong."""


def _cut(detail: str) -> str:
    # Whole characters only, so the header is valid UTF-8; a lone surrogate is escaped.
    encoded = detail.encode("utf-8", "backslashreplace")[:MAX_DETAIL_BYTES]
    return encoded.decode("utf-8", "ignore")


class DeadLetterHeaders(BaseModel):
    """The headers of a `grid.deadletter.v1` record: why the raw value was refused, and
    where it was read (the consumers always say; other producers may not)."""

    model_config = ConfigDict(frozen=True, title="DeadLetterHeaders")

    reason: RefusalReason = Field(description="Stable machine code (header error.reason).")
    detail: str = Field(description="Human explanation (header error.detail).")
    source_topic: str | None = Field(default=None, description="Header source.topic.")
    source_partition: int | None = Field(default=None, description="Header source.partition.")
    source_offset: int | None = Field(default=None, description="Header source.offset.")

    @classmethod
    def from_refusal(cls, refusal: EventRefused) -> Self:
        """The headers that record `refusal`; the detail is cut to keep headers small."""
        return cls(reason=refusal.reason, detail=_cut(refusal.detail))

    def to_kafka_headers(self) -> Headers:
        """As (name, UTF-8 bytes) pairs, the form Kafka clients take; unset ones left out."""
        headers = [
            (DEADLETTER_REASON_HEADER, self.reason.value.encode()),
            (DEADLETTER_DETAIL_HEADER, self.detail.encode()),
        ]
        source = (self.source_topic, self.source_partition, self.source_offset)
        for name, value in zip(DEADLETTER_SOURCE_HEADERS, source, strict=True):
            if value is not None:
                headers.append((name, str(value).encode()))
        return headers

    @classmethod
    def from_kafka_headers(cls, headers: Iterable[tuple[str, bytes | None]]) -> Self:
        """Read them back from a record's headers."""
        found = {name: (value or b"").decode() for name, value in headers}
        topic, partition, offset = (found.get(name) for name in DEADLETTER_SOURCE_HEADERS)
        return cls(
            reason=RefusalReason(found[DEADLETTER_REASON_HEADER]),
            detail=found.get(DEADLETTER_DETAIL_HEADER, ""),
            source_topic=topic,
            source_partition=None if partition is None else int(partition),
            source_offset=None if offset is None else int(offset),
        )


def dead_letter_record(
    topic: str,
    *,
    key: bytes | None,
    value: bytes | None,
    reason: RefusalReason,
    detail: str,
    source_topic: str,
    source_partition: int,
    source_offset: int,
    headers: Iterable[tuple[str, bytes]] = (),
) -> OutboundRecord:
    """A refused record's raw bytes and key, unchanged, with why and where it was read.

    The refused record's own CloudEvents headers (`ce_*`) are kept after ours.
    """
    letter = DeadLetterHeaders(
        reason=reason,
        detail=_cut(detail),
        source_topic=source_topic,
        source_partition=source_partition,
        source_offset=source_offset,
    )
    return OutboundRecord(
        topic=topic,
        key=key,
        value=value or b"",
        headers=[
            *letter.to_kafka_headers(),
            *((name, data) for name, data in headers if name.startswith("ce_")),
        ],
    )
