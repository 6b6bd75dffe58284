"""What the Kafka client factory promises every client, and the kafka-python internals it
relies on to never make a topic by naming it in a metadata request."""

from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.protocol.metadata import MetadataRequest

import kafka_clients

# api_version given: no broker is asked anything while a client is built.
CONFIG = kafka_clients.KafkaConfig("127.0.0.1:9,127.0.0.1:10")
OFFLINE: dict[str, Any] = {"api_version": (2, 5)}


def test_a_producer_asks_for_the_metadata_of_all_topics_never_of_one() -> None:
    plain = KafkaProducer(bootstrap_servers="127.0.0.1:9", **OFFLINE)
    producer = kafka_clients.producer(CONFIG, "test", **OFFLINE)
    try:
        assert plain._metadata.need_all_topic_metadata is False, "kafka-python's field moved"
        plain._metadata.set_topics(["grid.checkins.v1"])
        assert plain._metadata.metadata_request().topics != MetadataRequest.ALL_TOPICS
        producer._metadata.set_topics(["grid.checkins.v1"])
        assert producer._metadata.metadata_request().topics == MetadataRequest.ALL_TOPICS
    finally:
        plain.close(timeout=0)
        producer.close(timeout=0)


def test_a_consumer_that_assigns_itself_partitions_can_name_no_topic() -> None:
    consumer = kafka_clients.consumer(CONFIG, "test", names_no_topics=True, **OFFLINE)
    try:
        consumer._cluster.set_topics(["grid.checkins.v1"])
        assert consumer._cluster.metadata_request().topics == MetadataRequest.ALL_TOPICS
    finally:
        consumer.close(autocommit=False)


def test_a_client_is_named_for_its_purpose_and_keeps_the_callers_settings() -> None:
    producer = kafka_clients.producer(CONFIG, "gateway", linger_ms=7, acks="all", **OFFLINE)
    consumer = kafka_clients.consumer(CONFIG, "live", request_timeout_ms=9000, **OFFLINE)
    try:
        assert producer.config["client_id"] == "wangge-gateway"
        assert producer.config["bootstrap_servers"] == ["127.0.0.1:9", "127.0.0.1:10"]
        assert (producer.config["linger_ms"], producer.config["acks"]) == (7, -1)
        assert consumer.config["client_id"] == "wangge-live"
        assert consumer.config["request_timeout_ms"] == 9000
        assert consumer.config["allow_auto_create_topics"] is False
        assert isinstance(consumer, KafkaConsumer)
        # Only a consumer that asks for it names no topic: a subscription names its topics.
        assert consumer._cluster.need_all_topic_metadata is False
    finally:
        producer.close(timeout=0)
        consumer.close(autocommit=False)
