"""What the producers rely on to never make a topic by naming it in a metadata request."""

from kafka import KafkaProducer

from event_consumers.topics import never_name_topics


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
