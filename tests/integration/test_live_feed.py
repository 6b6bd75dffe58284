"""The live map's reader against the real broker: connecting never waits for good."""

import asyncio
import threading
from collections.abc import Callable

import pytest
from kafka import KafkaConsumer
from kafka.errors import KafkaTimeoutError

from geodata.contract import Topics
from grid_service.live_feed import LiveFeed
from grid_service.live_hub import LiveHub

pytestmark = pytest.mark.integration

BOUND_S = 3.0


def test_a_partition_whose_end_never_comes_ends_the_connection_within_its_bound(
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topics = topic_factory()
    told = KafkaConsumer.partitions_for_topic

    def and_one_lost(self: KafkaConsumer, topic: str) -> set[int] | None:
        # One partition more than the broker has: what a topic made anew with fewer
        # partitions looks like to a reader told of the old ones.
        numbers = told(self, topic)
        return None if not numbers else {*numbers, max(numbers) + 1}

    monkeypatch.setattr(KafkaConsumer, "partitions_for_topic", and_one_lost)
    loop = asyncio.new_event_loop()
    hub = LiveHub(loop)
    feed = LiveFeed(kafka_bootstrap, topics, hub, end_offsets_timeout_s=BOUND_S)
    raised: list[BaseException] = []

    def connect() -> None:
        try:
            feed._connect()
        except BaseException as exc:  # read below, whatever it is
            raised.append(exc)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(60)  # a bound on a hang, not a timing
    loop.close()
    assert not thread.is_alive(), "the connection still waits for the lost partition's end"
    [error] = raised
    assert isinstance(error, KafkaTimeoutError), error
    assert f"was not known within {BOUND_S:g} s" in str(error)
