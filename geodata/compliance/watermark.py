"""The compliance engine's event-time watermark: the minimum over partitions of their maxima.

A partition's check-ins arrive in about the order they were sent, but partitions are
read at their own pace: behind a backlog (a replay at full speed, a consumer catching up
after an outage) one may be read up to Tuesday night while another is still at Sunday.
A watermark that was the newest event time of all would then call Sunday's walks late.
So each partition keeps its own maximum, and the watermark is the least of them.

The rule for idle partitions: a partition read to its end does not hold the watermark
back, since nothing older waits on it (what arrives later is judged by the allowed
lateness, as always). When every partition is read to its end, the watermark is the
newest event time of all. A partition nobody has read a check-in from yet holds nothing
back; until one has been read, the stored watermark stands, which only ever moves forward.

The partitions are shared among the members of a consumer group, and each member knows
only its own; so each partition's progress (its newest event time, whether it is read to
its end) is stored, and a member's batch updates its own partitions' and takes the
watermark from every partition's (`geodata.db.compliance_store.load_partitions`). A
member that dies leaves its partitions as they were: a backlog it left holds the
watermark until their new owner has read it. Partitions beyond the topic's current count
(left by an earlier topic of the same name with more) are not counted.
"""

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class PartitionProgress:
    """How far one partition is read: its newest event time, and whether nothing is left."""

    newest: datetime
    read_to_end: bool


class PartitionWatermark:
    """Each partition's progress, and the watermark it gives."""

    def __init__(self, known: Mapping[int, PartitionProgress] | None = None) -> None:
        self._progress: dict[int, PartitionProgress] = dict(known or {})
        #: Partitions whose newest event time this batch moved.
        self._observed: set[int] = set()

    @property
    def progress(self) -> dict[int, PartitionProgress]:
        """Every partition's progress as it stands."""
        return dict(self._progress)

    def observe(self, partition: int, event_time: datetime) -> None:
        """Note an event read from `partition` (one not known yet is taken to be behind)."""
        known = self._progress.get(partition)
        if known is None:
            self._progress[partition] = PartitionProgress(event_time, read_to_end=False)
        elif event_time > known.newest:
            self._progress[partition] = PartitionProgress(event_time, known.read_to_end)
        else:
            return
        self._observed.add(partition)

    def settle(
        self, mine: Collection[int], read_to_end: Collection[int]
    ) -> dict[int, PartitionProgress]:
        """After a member's batch: flag each of its partitions (`mine`) read to its end or
        not; return the progress to store, that of its partitions with an event time."""
        changed = {}
        for partition in {*mine, *self._observed}:
            known = self._progress.get(partition)
            if known is None:
                continue  # no check-in read from it yet: it holds nothing back
            now = PartitionProgress(known.newest, partition in read_to_end)
            if now != known or partition in self._observed:
                self._progress[partition] = now
                changed[partition] = now
        self._observed.clear()
        return changed

    def value(self, partition_count: int | None = None) -> datetime | None:
        """The least newest event time of the partitions with records still to read; the
        greatest of all when none has; None before any event. Only partitions below
        `partition_count` count, when it is given."""
        counted = [
            p for n, p in self._progress.items() if partition_count is None or n < partition_count
        ]
        if not counted:
            return None
        behind = [p.newest for p in counted if not p.read_to_end]
        return min(behind) if behind else max(p.newest for p in counted)

    def advance(
        self, stored: datetime | None, partition_count: int | None = None
    ) -> datetime | None:
        """The watermark after this batch: `value`, never behind the stored one."""
        candidate = self.value(partition_count)
        if candidate is None or (stored is not None and stored >= candidate):
            return stored
        return candidate
