"""Broker-neutral records in and out of the handlers, and dead-letter construction."""

from dataclasses import dataclass, field

Headers = list[tuple[str, bytes]]


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


@dataclass(frozen=True)
class OutboundRecord:
    """One record to produce before the batch is committed."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers = field(default_factory=list)


def dead_letter(record: InboundRecord, reason: str, detail: str, topic: str) -> OutboundRecord:
    """The refused record's raw bytes and key, with why and where it came from."""
    return OutboundRecord(
        topic=topic,
        key=record.key,
        value=record.value or b"",
        headers=[
            ("error.reason", reason.encode()),
            ("error.detail", detail.encode()[:1000]),
            ("source.topic", record.topic.encode()),
            ("source.partition", str(record.partition).encode()),
            ("source.offset", str(record.offset).encode()),
            *((k, v) for k, v in record.headers if k.startswith("ce_")),
        ],
    )
