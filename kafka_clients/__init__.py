"""Builds every Kafka client wangge runs: producers, consumers and admin clients.

Both adapters and the composition root build their clients here, so what holds for all of
them is written once: where the broker is, how a client is named (`wangge-<purpose>`),
and that no client makes a topic (topics are made by `event_consumers.topics.ensure_topics`
only, with the contract's partition count). For the last, every producer and consumer is
built with `allow_auto_create_topics=False`, but kafka-python 3.0.12 does not put that flag
into its metadata requests, and Tansu makes a named topic whatever the flag says; what
holds is that a producer never names a topic (`never_name_topics`).

Each caller passes its own settings (acks, linger, timeouts, …) as keyword arguments, as
kafka-python takes them; the factory adds nothing else, for kafka-python tells a setting given
from one left at its default (an explicit acks other than "all" turns idempotence off).

Depends on kafka-python only; the domain core `geodata` never imports it.
"""

from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    """Where the broker is and how wangge's clients are named."""

    #: `host:port[,host:port]`, as in WANGGE_KAFKA_BOOTSTRAP.
    bootstrap: str
    client_id_prefix: str = "wangge"

    def settings(self, purpose: str) -> dict[str, Any]:
        """The settings every client of `purpose` starts from."""
        return {
            "bootstrap_servers": self.bootstrap.split(","),
            "client_id": f"{self.client_id_prefix}-{purpose}",
        }


def never_name_topics(client: KafkaProducer | KafkaConsumer) -> None:
    """Make a client ask the broker for the metadata of all topics, never of one by name.

    Tansu makes any topic a metadata request names, with its own partition count (4),
    whatever the client's allow_auto_create_topics says; a request for all topics makes
    none, so a client never brings back a lost topic with the wrong count. A consumer
    that subscribes by name clears the flag again (kafka-python does so in `subscribe`):
    only a consumer that assigns itself partitions keeps it. This sets a private field of
    kafka-python (the version is pinned; tests/unit/test_kafka_clients.py fails if it goes
    away).
    """
    cluster = client._metadata if isinstance(client, KafkaProducer) else client._cluster
    cluster.need_all_topic_metadata = True


def producer(config: KafkaConfig, purpose: str, **settings: Any) -> KafkaProducer:
    """A producer named `purpose` that never makes a topic, with the caller's `settings`."""
    made = _build(
        KafkaProducer, config.settings(purpose) | {"allow_auto_create_topics": False} | settings
    )
    never_name_topics(made)
    return made


def consumer(
    config: KafkaConfig, purpose: str, *, names_no_topics: bool = False, **settings: Any
) -> KafkaConsumer:
    """A consumer named `purpose` that never makes a topic, with the caller's `settings`.

    `names_no_topics`: also never name a topic in a metadata request (`never_name_topics`);
    for a consumer that assigns itself partitions.
    """
    made = _build(
        KafkaConsumer, config.settings(purpose) | {"allow_auto_create_topics": False} | settings
    )
    if names_no_topics:
        never_name_topics(made)
    return made


def admin(config: KafkaConfig, purpose: str, **settings: Any) -> KafkaAdminClient:
    """An admin client named `purpose`, with the caller's `settings`."""
    return _build(KafkaAdminClient, config.settings(purpose) | settings)


def _build(kind: Any, settings: dict[str, Any]) -> Any:
    """`kind(**settings)`, leaving no thread behind when the client cannot bootstrap.

    kafka-python 3.0.12 starts a client's I/O thread before it bootstraps and leaves it
    running when bootstrapping fails: one thread for every attempt while the broker is
    away. Stop what close() would have stopped.
    """
    client = kind.__new__(kind)
    try:
        client.__init__(**settings)
    except BaseException:
        inner, net = getattr(client, "_client", None), getattr(client, "_net", None)
        with suppress(Exception):
            if inner is not None:
                inner.close()
        with suppress(Exception):
            if net is not None:
                net.stop()
        raise
    return client
