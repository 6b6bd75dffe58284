"""The contract's topics on the broker: create the missing ones, and tell one incarnation
of a topic from the next.

A broker that loses its data (the local in-memory broker after a restart, a topic deleted
and made again) starts a topic's offsets at 0 again. Offsets stored with the rows then
point past the new end, and a consumer that seeks there waits for records that already
came and went. Kafka gives every topic a unique id (KIP-516) that a new incarnation does
not share, so the consumers store it with their offsets and start over when it changes.
"""

import logging
import time
from collections.abc import Iterable, Sequence

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

import kafka_clients

logger = logging.getLogger(__name__)

#: What brokers without topic ids send in the field: the nil UUID, in either spelling.
_NO_TOPIC_ID = frozenset({"00000000-0000-0000-0000-000000000000", "AAAAAAAAAAAAAAAAAAAAAA"})


def _admin(bootstrap: str, timeout_ms: int) -> KafkaAdminClient:
    return kafka_clients.admin(
        kafka_clients.KafkaConfig(bootstrap), "topics", request_timeout_ms=timeout_ms
    )


def ensure_topics(
    bootstrap: str, partitions: int, names: Iterable[str], *, timeout_ms: int = 10_000
) -> list[str]:
    """Create the topics among `names` that are missing; return the ones created."""
    admin = _admin(bootstrap, timeout_ms)
    try:
        existing = set(admin.list_topics())
        created = []
        for topic in (name for name in names if name not in existing):
            try:
                admin.create_topics([NewTopic(topic, partitions, 1)])
                created.append(topic)
            except TopicAlreadyExistsError:
                pass  # another process made it in the meantime
        if created:
            logger.info("created topics %s (%d partitions each)", created, partitions)
        return created
    finally:
        admin.close()


def topic_ids(
    bootstrap: str, names: Iterable[str], *, timeout_ms: int = 10_000
) -> dict[str, str | None]:
    """Each existing topic's id (None where the broker gives none); missing topics absent."""
    wanted = list(names)
    admin = _admin(bootstrap, timeout_ms)
    try:
        existing = set(admin.list_topics())
        present = [name for name in wanted if name in existing]
        found: dict[str, str | None] = {}
        for described in admin.describe_topics(present) if present else []:
            if described.get("error_code", 0) != 0:
                continue
            raw = described.get("topic_id")
            topic_id = str(raw) if raw is not None else None
            found[described["name"]] = None if topic_id in _NO_TOPIC_ID else topic_id
        return found
    finally:
        admin.close()


class TopicIncarnations:
    """The ids of a consumer's topics as last seen, to tell when the broker made one anew."""

    def __init__(self, bootstrap: str, names: Sequence[str]) -> None:
        self.bootstrap = bootstrap
        self.names = list(names)
        self.missing: list[str] = []
        #: When the broker was last asked (monotonic seconds; 0: never).
        self.checked_at = 0.0
        self._ids: dict[str, str | None] = {}

    def id_of(self, topic: str) -> str | None:
        """The topic's id as last seen (None: unknown, or the broker gives none)."""
        return self._ids.get(topic)

    def refresh(self, timeout_ms: int = 5000) -> list[str]:
        """Ask the broker again; return the topics whose id changed (raises KafkaError)."""
        current = topic_ids(self.bootstrap, self.names, timeout_ms=timeout_ms)
        self.checked_at = time.monotonic()
        renewed = [
            name
            for name, topic_id in current.items()
            if name in self._ids and self._ids[name] != topic_id
        ]
        self.missing = [name for name in self.names if name not in current]
        # A missing topic keeps its last id, so that its return is seen as a new one.
        self._ids.update(current)
        return renewed
