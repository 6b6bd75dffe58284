"""What the consumers rely on to never make a topic by naming it in a metadata request."""

import re

from kafka import KafkaProducer

from event_consumers.topics import never_name_topics, subscription_pattern


def test_a_producer_can_be_told_to_ask_for_all_topics() -> None:
    # api_version given: no broker is asked anything while the producer is built.
    producer = KafkaProducer(bootstrap_servers="127.0.0.1:9", api_version=(2, 5))
    try:
        metadata = producer._metadata
        assert metadata.need_all_topic_metadata is False, "kafka-python's field moved"
        assert never_name_topics(producer) is producer
        assert metadata.need_all_topic_metadata is True
    finally:
        producer.close(timeout=0)


def test_the_subscription_pattern_matches_exactly_the_named_topics() -> None:
    pattern = re.compile(subscription_pattern(["t1.grid.checkins.v1", "t1.grid.incidents.v1"]))
    assert pattern.match("t1.grid.checkins.v1")
    assert pattern.match("t1.grid.incidents.v1")
    assert not pattern.match("t1xgrid.checkins.v1")  # dots are literal
    assert not pattern.match("t1.grid.checkins.v1.old")
    assert not pattern.match("t2.t1.grid.checkins.v1")
