"""Fan-out of map messages to the connected stream clients, each with a bounded queue.

One reader thread publishes; every client has its own queue on the event loop. A client
whose queue is full is dropped (told so, then its stream ends) rather than slowing the
reader or the other clients: a wall map that fell behind reconnects and is live again,
where one that waited would show the past.
"""

import asyncio
import logging
from dataclasses import dataclass
from typing import Final

from geodata.live import MapMessage, StreamFilter

logger = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE: Final = 2048
"""Messages a client may lag behind: a few seconds of a simulated city at full speed."""


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """Whether the map messages are live: the reader is at the end of the topics."""

    live: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Dropped:
    """The last item of a client that fell `behind` messages behind: its stream ends."""

    behind: int


@dataclass(frozen=True, slots=True)
class Closed:
    """The last item of every client when the app shuts down."""


QueueItem = MapMessage | FeedStatus | Dropped | Closed


class Subscriber:
    """One connected client: its filter, its queue and a name for the log."""

    def __init__(self, stream_filter: StreamFilter, name: str, queue_size: int) -> None:
        self.filter = stream_filter
        self.name = name
        self.queue: asyncio.Queue[QueueItem] = asyncio.Queue(queue_size)

    def _end_with(self, item: Dropped | Closed) -> None:
        # Whatever is still queued is discarded, so the final item always fits.
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(item)


class LiveHub:
    """Subscribers on one event loop, fed from any thread by `publish` and `set_status`."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, queue_size: int = DEFAULT_QUEUE_SIZE
    ) -> None:
        self._loop = loop
        self._queue_size = queue_size
        self._subscribers: set[Subscriber] = set()
        self._status = FeedStatus(live=False, detail="connecting to the broker")
        self._closed = False
        self.dropped = 0

    @property
    def status(self) -> FeedStatus:
        """The reader's latest status."""
        return self._status

    @property
    def subscriber_count(self) -> int:
        """Clients connected now."""
        return len(self._subscribers)

    # ---------------------------------------------------------------- from any thread

    def publish(self, messages: list[MapMessage]) -> None:
        """Hand a batch of messages to the loop; never blocks the calling thread."""
        if messages and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._deliver, messages)

    def set_status(self, status: FeedStatus) -> None:
        """Tell every client whether the stream is live now."""
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._deliver_status, status)

    # ---------------------------------------------------------------- on the loop

    def subscribe(self, stream_filter: StreamFilter, name: str) -> Subscriber:
        """A new client; its queue starts with the current status."""
        subscriber = Subscriber(stream_filter, name, self._queue_size)
        if self._closed:
            subscriber.queue.put_nowait(Closed())
            return subscriber
        subscriber.queue.put_nowait(self._status)
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget a client that disconnected (or was dropped)."""
        self._subscribers.discard(subscriber)

    def end(self, subscriber: Subscriber) -> None:
        """End one client's stream now (the server is stopping)."""
        self._subscribers.discard(subscriber)
        subscriber._end_with(Closed())

    def close(self) -> None:
        """End every client's stream; later subscribers get an ended stream at once."""
        self._closed = True
        for subscriber in self._subscribers:
            subscriber._end_with(Closed())
        self._subscribers.clear()

    def _deliver(self, messages: list[MapMessage]) -> None:
        for subscriber in list(self._subscribers):
            admitted = [m for m in messages if subscriber.filter.admits(m)]
            for message in admitted:
                try:
                    subscriber.queue.put_nowait(message)
                except asyncio.QueueFull:
                    self._drop(subscriber)
                    break

    def _deliver_status(self, status: FeedStatus) -> None:
        self._status = status
        for subscriber in list(self._subscribers):
            try:
                subscriber.queue.put_nowait(status)
            except asyncio.QueueFull:
                self._drop(subscriber)

    def _drop(self, subscriber: Subscriber) -> None:
        behind = subscriber.queue.qsize()
        logger.warning(
            "live stream: dropped the slow client %s, %d messages behind (queue full); "
            "it may reconnect",
            subscriber.name,
            behind,
        )
        self.dropped += 1
        self._subscribers.discard(subscriber)
        subscriber._end_with(Dropped(behind))
