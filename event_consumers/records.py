"""Records in and out of the handlers: the record as read from a topic, and its dead letter.

What the handlers produce is built by the contract (`geodata.records`); the names it
shares with the runner are imported from here by the Kafka adapter.
"""

from dataclasses import dataclass, field

from geodata.events import RefusalReason
from geodata.records import Headers, OutboundRecord, dead_letter_record

__all__ = ["Headers", "InboundRecord", "OutboundRecord", "dead_letter"]


@dataclass(frozen=True)
class InboundRecord:
    """One record as read from a topic."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)


def dead_letter(
    record: InboundRecord, reason: RefusalReason, detail: str, topic: str
) -> OutboundRecord:
    """The refused record's raw bytes and key, with why and where it came from."""
    return dead_letter_record(
        topic,
        key=record.key,
        value=record.value,
        reason=reason,
        detail=detail,
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        headers=record.headers,
    )
