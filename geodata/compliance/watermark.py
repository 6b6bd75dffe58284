"""The compliance engine's event-time watermark: the minimum over partitions of their maxima.

A partition's check-ins arrive in about the order they were sent, but partitions are
read at their own pace: behind a backlog (a replay at full speed, a consumer catching up
after an outage) one may be read up to Tuesday night while another is still at Sunday.
A watermark that was the newest event time of all would then call Sunday's walks late.
So each partition keeps its own maximum, and the watermark is the least of them.

The rule for idle partitions: a partition the consumer has read to its end does not
hold the watermark back, since nothing older waits on it (what arrives later is judged
by the allowed lateness, as always). When every partition is read to its end, the
watermark is the newest event time of all. A partition not read from since the
consumer started or was given it counts from its first record on; until then the
stored watermark stands, which only ever moves forward.

Each consumer-group member knows its own partitions only: with several compliance
processes, each moves the one stored watermark by its partitions, so a member read to
its ends can move it past another member's backlog (`wangge up` runs one).
"""

from collections.abc import Collection
from datetime import datetime


class PartitionWatermark:
    """Each partition's newest event time, and the watermark they give."""

    def __init__(self) -> None:
        self._maxima: dict[int, datetime] = {}

    def observe(self, partition: int, event_time: datetime) -> None:
        """Note an event read from `partition`."""
        newest = self._maxima.get(partition)
        if newest is None or event_time > newest:
            self._maxima[partition] = event_time

    def value(self, read_to_end: Collection[int]) -> datetime | None:
        """The least maximum of the partitions with records still to read; the greatest
        of all when none has; None before any event."""
        if not self._maxima:
            return None
        behind = [t for p, t in self._maxima.items() if p not in read_to_end]
        return min(behind) if behind else max(self._maxima.values())

    def advance(self, stored: datetime | None, read_to_end: Collection[int]) -> datetime | None:
        """The watermark after this batch: `value`, never behind the stored one."""
        candidate = self.value(read_to_end)
        if candidate is None or (stored is not None and stored >= candidate):
            return stored
        return candidate

    def clear(self) -> None:
        """Forget every partition (given other partitions, or a batch rolled back)."""
        self._maxima.clear()
