"""Every event that reaches the topics is stored or dead-lettered, and intake never stops.

A property test over the whole input space the contract's parsers see: valid check-ins,
incidents and assignments with one or two fields replaced by what a broken phone or a
hostile client may send (extreme datetimes and offsets, NUL and other control
characters, lone surrogates, huge and tiny numbers, deep nesting, wrong types). They go
through a real `wangge consume` (both stages) against PostGIS and the broker; after each
example a normal check-in and incident must still be stored, and every record produced is
accounted for: stored, or on the dead-letter topic with a reason.
"""

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kafka import KafkaProducer

from geodata.contract import Topics
from geodata.events import RefusalReason
from geodata.hierarchy import lineage_of
from tests.integration.pipeline_support import (
    ConsumerProcess,
    Placement,
    checkin_event,
    placements,
    read_topic,
    wait_until,
)

pytestmark = pytest.mark.integration

#: Strings a phone or a hostile client may send: NUL, control characters, surrogates.
NASTY_STRINGS = st.one_of(
    st.sampled_from(["\x00", "a\x00b", "\ud800", "\udfff", "x\udc80y", "\x1f\x7f", "\u2028"]),
    st.text(st.characters(exclude_categories=()), max_size=12),
)
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([5e-324, -0.0, 1e308, 2**63, -(2**63) - 1]),
)
OFFSETS = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
TIMES = st.one_of(
    st.builds(
        lambda t, tz: t.replace(tzinfo=tz).isoformat(),
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59)),
        OFFSETS,
    ),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-12:00",
            "1900-01-01T00:00:00Z",
            "1999-12-31T23:59:59Z",
            "2020-09-07T09:15:00",  # no offset
            "2020-09-07",
            "",
        ]
    ),
)
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), NUMBERS, NASTY_STRINGS),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(NASTY_STRINGS, inner, max_size=3)
    ),
    max_leaves=8,
)
DEEP = st.integers(min_value=20, max_value=600).map(lambda n: json.loads("[" * n + "]" * n))
ODD_VALUES = st.one_of(NASTY_STRINGS, NUMBERS, TIMES, JSON_VALUES, DEEP)


@dataclass(frozen=True)
class Mutation:
    """Fields of a valid event to replace or add, and how to serialise it."""

    fields: dict[str, Any]
    ensure_ascii: bool


def mutations(names: list[str]) -> st.SearchStrategy[Mutation]:
    """One or two fields of the event (or new extra fields) set to odd values."""
    keys = st.one_of(st.sampled_from(names), NASTY_STRINGS)
    return st.builds(
        Mutation,
        st.dictionaries(keys, ODD_VALUES, min_size=0, max_size=2),
        st.booleans(),
    )


def serialise(event: dict[str, Any], mutation: Mutation) -> bytes:
    """As a client would: JSON, maybe non-ASCII, surrogates passed through as they are."""
    text = json.dumps({**event, **mutation.fields}, ensure_ascii=mutation.ensure_ascii)
    return text.encode("utf-8", "surrogatepass")


CHECKIN_FIELDS = ["event_id", "worker_id", "lon", "lat", "recorded_at", "accuracy_m", "crs"]
INCIDENT_FIELDS = [
    "event_id",
    "incident_id",
    "category",
    "description",
    "lon",
    "lat",
    "reported_at",
    "source",
    "reporter_id",
    "crs",
]
ASSIGNMENT_FIELDS = ["event_id", "worker_id", "grid_code", "recorded_at", "accuracy_m"]


@dataclass
class Stack:
    """One running `wangge consume` with its database and topics, shared by the examples."""

    database_url: str
    bootstrap: str
    topics: Topics
    consumer: ConsumerProcess
    spots: list[Placement]
    producer: KafkaProducer


@pytest.fixture(scope="module")
def stack(
    reference_database_factory: Callable[[], str],
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """A consumer of both stages on a fresh copy of the reference city."""
    from wangge import services

    database_url = reference_database_factory()
    topics = Topics.under(f"t{uuid.uuid4().hex[:10]}.")
    services.ensure_topics(kafka_bootstrap, 2, topics)
    log_dir: Path = tmp_path_factory.mktemp("poison")
    consumer = ConsumerProcess(
        database_url, kafka_bootstrap, topics, f"g{uuid.uuid4().hex[:8]}", log_dir
    ).start()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=5)
    try:
        yield Stack(
            database_url,
            kafka_bootstrap,
            topics,
            consumer,
            placements(database_url, seed=7)[:50],
            producer,
        )
    finally:
        producer.close()
        if consumer.alive():
            consumer.stop()
        services.delete_topics(kafka_bootstrap, topics)


def _incident(spot: Placement) -> dict[str, Any]:
    event_id = str(uuid.uuid4())
    return {
        "event_id": event_id,
        "incident_id": str(uuid.uuid4()),
        "category": "environment.garbage",
        "description": "垃圾堆放",
        "lon": spot.lon,
        "lat": spot.lat,
        "reported_at": "2020-09-08T10:00:00+08:00",
        "source": "worker",
        "reporter_id": spot.worker_id,
    }


def _assignment(spot: Placement) -> dict[str, Any]:
    # Whole, as the contract has it, so that only the mutation can make it refused.
    lineage = lineage_of(spot.grid_code)
    return {
        **checkin_event(spot.worker_id, spot.lon, spot.lat, 30),
        "grid_code": spot.grid_code,
        "community_code": lineage.community_code,
        "street_code": lineage.street_code,
        "district_code": lineage.district_code,
        "staff_id": spot.worker_id,
        "in_assigned_grid": True,
        "assignment_rule": "contains",
        "assigned_at": datetime.now(UTC).isoformat(),
    }


@dataclass(frozen=True)
class Produced:
    """Where a record went, and the event id it claims (when it is a UUID)."""

    topic: str
    partition: int
    offset: int
    event_id: uuid.UUID | None
    value: bytes


def _event_id(value: bytes) -> uuid.UUID | None:
    try:
        document = json.loads(value)  # bytes: as a consumer reads them, surrogates too
        return uuid.UUID(str(document["event_id"]))
    except (ValueError, KeyError, TypeError, RecursionError, AttributeError):
        return None


def _send(stack: Stack, topic: str, key: bytes, value: bytes) -> Produced:
    meta = stack.producer.send(topic, key=key, value=value).get(timeout=30)
    return Produced(topic, meta.partition, meta.offset, _event_id(value), value[:300])


def _stored_ids(database_url: str, table: str, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            f"SELECT event_id FROM {table} WHERE event_id = ANY(%s)", (ids,)
        ).fetchall()
    return {row[0] for row in rows}


STORED_IN = {"checkins": "checkins", "incidents": "incidents", "assignments": "patrol_checkins"}


@settings(
    max_examples=12,
    deadline=None,
    # Each example runs the real pipeline: shrinking would take minutes, and the failure
    # message already shows the records that were lost.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    checkins=st.lists(mutations(CHECKIN_FIELDS), min_size=1, max_size=8),
    incidents=st.lists(mutations(INCIDENT_FIELDS), min_size=1, max_size=6),
    assignments=st.lists(mutations(ASSIGNMENT_FIELDS), max_size=4),
    pick=st.randoms(use_true_random=False),
)
def test_every_event_is_stored_or_dead_lettered_and_intake_goes_on(
    stack: Stack,
    checkins: list[Mutation],
    incidents: list[Mutation],
    assignments: list[Mutation],
    pick: Any,
) -> None:
    """Hostile events never stop the consumers, and none is lost without a reason."""
    topics = stack.topics
    produced: list[tuple[str, Produced]] = []
    for mutation in checkins:
        spot = pick.choice(stack.spots)
        event = checkin_event(spot.worker_id, spot.lon, spot.lat, pick.uniform(0, 6000))
        value = serialise(event, mutation)
        produced.append(("checkins", _send(stack, topics.checkins, b"w", value)))
    for mutation in incidents:
        value = serialise(_incident(pick.choice(stack.spots)), mutation)
        produced.append(("incidents", _send(stack, topics.incidents, b"i", value)))
    for mutation in assignments:
        value = serialise(_assignment(pick.choice(stack.spots)), mutation)
        produced.append(("assignments", _send(stack, topics.assignments, b"a", value)))

    # Normal events after the hostile ones: intake and compliance must still take them.
    spot = pick.choice(stack.spots)
    normal_checkin = checkin_event(spot.worker_id, spot.lon, spot.lat, 60)
    normal_incident = _incident(spot)
    _send(stack, topics.checkins, spot.worker_id.encode(), json.dumps(normal_checkin).encode())
    _send(stack, topics.incidents, b"i", json.dumps(normal_incident).encode())
    sentinels = {
        "checkins": uuid.UUID(str(normal_checkin["event_id"])),
        "incidents": uuid.UUID(str(normal_incident["event_id"])),
        "patrol_checkins": uuid.UUID(str(normal_checkin["event_id"])),
    }

    def sentinels_stored() -> bool:
        return all(
            _stored_ids(stack.database_url, table, [event_id])
            for table, event_id in sentinels.items()
        )

    wait_until(
        sentinels_stored,
        90,
        f"a normal event after hostile ones was not stored; consumer log:\n"
        f"{stack.consumer.log()[-3000:]}",
        every=0.5,
    )
    assert stack.consumer.alive(), stack.consumer.log()[-3000:]

    letters = {
        (
            headers["source.topic"].decode(),
            int(headers["source.partition"]),
            int(headers["source.offset"]),
        ): headers["error.reason"].decode()
        for headers in (
            dict(record.headers)  # type: ignore[attr-defined]
            for record in read_topic(stack.bootstrap, topics.deadletter)
        )
    }
    reasons = {reason.value for reason in RefusalReason}
    assert set(letters.values()) <= reasons
    unaccounted = []
    for kind, record in produced:
        if (record.topic, record.partition, record.offset) in letters:
            continue
        table = STORED_IN[kind]
        if record.event_id is not None and _stored_ids(
            stack.database_url, table, [record.event_id]
        ):
            continue
        unaccounted.append((kind, record))
    assert not unaccounted, f"neither stored nor dead-lettered: {unaccounted}"
