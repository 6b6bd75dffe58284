"""The live hub's fan-out: each client its own filtered queue; a slow one is dropped alone."""

import asyncio
import logging
import threading

import pytest

from geodata.live import LiveKind, MapMessage, StreamFilter
from grid_service.live_hub import Closed, Dropped, FeedStatus, LiveHub, QueueItem


def message(area_code: str, n: int = 0) -> MapMessage:
    """A check-in message under `area_code`."""
    return MapMessage(LiveKind.CHECKIN, f"e{n}", area_code, "{}")


def drain(queue: "asyncio.Queue[QueueItem]") -> list[QueueItem]:
    """Everything queued now."""
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


async def settle() -> None:
    """Let the callbacks scheduled with call_soon_threadsafe run."""
    for _ in range(3):
        await asyncio.sleep(0)


def test_each_client_gets_its_status_then_only_its_areas_messages() -> None:
    async def scenario() -> None:
        hub = LiveHub(asyncio.get_running_loop())
        x = hub.subscribe(StreamFilter("610302"), "x")
        y = hub.subscribe(StreamFilter("610303"), "y")
        thread = threading.Thread(
            target=hub.publish, args=([message("610302001001001"), message("610303001001001")],)
        )
        thread.start()
        thread.join()
        await settle()
        assert drain(x.queue)[1:] == [message("610302001001001")]
        assert drain(y.queue)[1:] == [message("610303001001001")]

    asyncio.run(scenario())


def test_a_slow_client_is_dropped_with_a_log_and_the_others_keep_everything(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        hub = LiveHub(asyncio.get_running_loop(), queue_size=5)
        slow = hub.subscribe(StreamFilter(), "slow wall screen")
        fast = hub.subscribe(StreamFilter(), "fast")
        for n in range(12):
            hub.publish([message("610302001001001", n)])
            await settle()
            drain(fast.queue)  # the fast client keeps reading
        assert drain(slow.queue) == [Dropped(behind=5)]
        assert hub.subscriber_count == 1
        assert hub.dropped == 1
        hub.publish([message("610302001001001", 99)])
        await settle()
        assert drain(fast.queue) == [message("610302001001001", 99)]

    with caplog.at_level(logging.WARNING, logger="grid_service.live_hub"):
        asyncio.run(scenario())
    assert "dropped the slow client slow wall screen" in caplog.text


def test_status_reaches_every_client_and_close_ends_every_stream() -> None:
    async def scenario() -> None:
        hub = LiveHub(asyncio.get_running_loop())
        client = hub.subscribe(StreamFilter(), "c")
        assert drain(client.queue) == [FeedStatus(live=False, detail="connecting to the broker")]
        hub.set_status(FeedStatus(live=True, detail="live"))
        await settle()
        assert drain(client.queue) == [FeedStatus(live=True, detail="live")]
        hub.close()
        assert drain(client.queue) == [Closed()]
        late = hub.subscribe(StreamFilter(), "late")
        assert drain(late.queue) == [Closed()]

    asyncio.run(scenario())
