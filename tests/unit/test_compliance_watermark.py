"""The compliance watermark: the minimum over partitions of their maxima, idle ones aside,
whichever member of the group read them."""

from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from geodata.compliance.watermark import PartitionProgress, PartitionWatermark

SUNDAY = datetime(2020, 9, 13, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, 2020-W37's last day
TUESDAY_NIGHT = SUNDAY + timedelta(days=2, hours=12)
WEDNESDAY = SUNDAY + timedelta(days=3)


def _read(events: list[tuple[int, datetime]], read_to_end: Collection[int]) -> PartitionWatermark:
    """One member that read `events` from its partitions, some now read to their end."""
    clock = PartitionWatermark()
    for partition, at in events:
        clock.observe(partition, at)
    clock.settle({p for p, _ in events}, read_to_end)
    return clock


class Table:
    """The stored progress every member reads and writes under the clock's lock."""

    def __init__(self) -> None:
        self.rows: dict[int, PartitionProgress] = {}
        self.watermark: datetime | None = None

    def batch(
        self,
        events: list[tuple[int, datetime]],
        mine: Collection[int],
        read_to_end: Collection[int],
        partition_count: int | None = None,
    ) -> datetime | None:
        """One member's batch, as the engine runs it; the watermark after it."""
        clock = PartitionWatermark(self.rows)
        for partition, at in events:
            clock.observe(partition, at)
        self.rows.update(clock.settle(mine, read_to_end))
        self.watermark = clock.advance(self.watermark, partition_count)
        return self.watermark


def test_a_partition_behind_holds_the_watermark_at_its_newest_event() -> None:
    # A partition read ahead, to the pings after the week, and one still at Sunday's walks.
    clock = _read([(0, TUESDAY_NIGHT), (1, SUNDAY)], read_to_end=set())
    assert clock.value() == SUNDAY


def test_a_partition_read_to_its_end_does_not_hold_the_watermark_back() -> None:
    events = [(0, TUESDAY_NIGHT), (1, SUNDAY)]
    assert _read(events, read_to_end={1}).value() == TUESDAY_NIGHT
    assert _read(events, read_to_end={0}).value() == SUNDAY


def test_with_every_partition_read_to_its_end_the_watermark_is_the_newest_event() -> None:
    events = [(0, SUNDAY), (1, TUESDAY_NIGHT), (2, SUNDAY - timedelta(days=3))]
    assert _read(events, read_to_end={0, 1, 2}).value() == TUESDAY_NIGHT


def test_the_watermark_never_moves_back_from_the_stored_one() -> None:
    clock = PartitionWatermark()
    assert clock.advance(None) is None
    clock.observe(3, SUNDAY)
    assert clock.advance(None) == SUNDAY
    assert clock.advance(TUESDAY_NIGHT) == TUESDAY_NIGHT
    assert PartitionWatermark().advance(SUNDAY) == SUNDAY


def test_a_member_read_to_its_ends_does_not_move_the_watermark_past_anothers_backlog() -> None:
    table = Table()
    # Member B has read its partition 1 to Sunday morning, with more still to read.
    assert table.batch([(1, SUNDAY)], mine={1}, read_to_end=set()) == SUNDAY
    # Member A reads its partitions 0 and 2 to their ends, at Wednesday: B's backlog holds.
    assert table.batch([(0, WEDNESDAY), (2, WEDNESDAY)], mine={0, 2}, read_to_end={0, 2}) == SUNDAY
    # B reads on to Sunday night, then to its end: only then is the watermark A's.
    assert table.batch([(1, SUNDAY + timedelta(hours=12))], mine={1}, read_to_end=set()) == (
        SUNDAY + timedelta(hours=12)
    )
    assert table.batch([(1, SUNDAY + timedelta(hours=13))], mine={1}, read_to_end={1}) == WEDNESDAY


def test_a_partition_flagged_by_its_member_without_a_new_event_stops_holding_it_back() -> None:
    table = Table()
    table.batch([(1, SUNDAY)], mine={1}, read_to_end=set())
    assert table.batch([(0, WEDNESDAY)], mine={0}, read_to_end={0}) == SUNDAY
    # B's last batch held only records that are no check-ins: its partition is read.
    assert table.batch([], mine={1}, read_to_end={1}) == WEDNESDAY
    assert table.rows[1] == PartitionProgress(SUNDAY, read_to_end=True)


def test_a_dead_members_backlog_holds_the_watermark_until_the_new_owner_reads_it() -> None:
    table = Table()
    table.batch([(1, SUNDAY)], mine={1}, read_to_end=set())  # B, then B dies
    # A is given partition 1 too, but has not polled its records yet: B's row stands.
    assert table.batch([(0, WEDNESDAY)], mine={0, 1}, read_to_end={0}) == SUNDAY
    assert table.rows[1] == PartitionProgress(SUNDAY, read_to_end=False)
    assert table.batch([(1, TUESDAY_NIGHT)], mine={0, 1}, read_to_end={0, 1}) == WEDNESDAY


def test_a_partition_nobody_has_read_a_checkin_from_holds_nothing_back() -> None:
    table = Table()
    # Partition 1 is assigned but has given no check-in: it has no row.
    assert table.batch([(0, SUNDAY)], mine={0, 1}, read_to_end={0}) == SUNDAY
    assert set(table.rows) == {0}


def test_partitions_past_the_topics_count_do_not_hold_the_watermark_back() -> None:
    table = Table()
    # Left by an earlier topic of the same name with six partitions, its reader gone.
    table.batch([(5, SUNDAY)], mine={5}, read_to_end=set())
    table.watermark = None
    assert table.batch([(0, WEDNESDAY)], mine={0}, read_to_end=set(), partition_count=4) == (
        WEDNESDAY
    )


def test_only_the_partitions_a_batch_changed_are_written_again() -> None:
    clock = PartitionWatermark(
        {0: PartitionProgress(SUNDAY, True), 1: PartitionProgress(SUNDAY, False)}
    )
    clock.observe(1, SUNDAY - timedelta(hours=1))  # older than what the partition showed
    assert clock.settle({0, 1}, read_to_end={0}) == {}
    clock.observe(1, TUESDAY_NIGHT)
    assert clock.settle({0, 1}, read_to_end={0, 1}) == {1: PartitionProgress(TUESDAY_NIGHT, True)}


instants = st.integers(min_value=0, max_value=14 * 24 * 3600).map(
    lambda s: SUNDAY + timedelta(seconds=s)
)


@given(
    events=st.lists(st.tuples(st.integers(0, 5), instants), min_size=1, max_size=60),
    ended=st.sets(st.integers(0, 5)),
    members=st.integers(1, 3),
)
def test_the_watermark_is_the_least_maximum_of_the_partitions_still_behind(
    events: list[tuple[int, datetime]], ended: set[int], members: int
) -> None:
    # However the partitions are shared among members, and in whatever order their
    # batches take the lock, the watermark is the rule applied to all of them.
    table = Table()
    for member in range(members):
        mine = {p for p in range(6) if p % members == member}
        own = [(p, at) for p, at in events if p in mine]
        table.batch(own[: len(own) // 2], mine, read_to_end=set())
        table.batch(own[len(own) // 2 :], mine, read_to_end=ended & mine)
    maxima: dict[int, datetime] = {}
    for partition, at in events:
        maxima[partition] = max(maxima.get(partition, at), at)
    behind = [at for partition, at in maxima.items() if partition not in ended]
    expected = min(behind) if behind else max(maxima.values())
    assert PartitionWatermark(table.rows).value() == expected
    # Never ahead of what a partition still behind has shown, never behind the oldest.
    assert min(maxima.values()) <= expected <= max(maxima.values())
