"""The compliance watermark: the minimum over partitions of their maxima, idle ones aside."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from geodata.compliance.watermark import PartitionWatermark

SUNDAY = datetime(2020, 9, 13, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, 2020-W37's last day
TUESDAY_NIGHT = SUNDAY + timedelta(days=2, hours=12)


def test_a_partition_behind_holds_the_watermark_at_its_newest_event() -> None:
    clock = PartitionWatermark()
    clock.observe(0, TUESDAY_NIGHT)  # a partition read ahead, to the pings after the week
    clock.observe(1, SUNDAY)  # one still at Sunday's walks, with more to read
    assert clock.value(read_to_end=set()) == SUNDAY


def test_a_partition_read_to_its_end_does_not_hold_the_watermark_back() -> None:
    clock = PartitionWatermark()
    clock.observe(0, TUESDAY_NIGHT)
    clock.observe(1, SUNDAY)
    assert clock.value(read_to_end={1}) == TUESDAY_NIGHT
    assert clock.value(read_to_end={0}) == SUNDAY


def test_with_every_partition_read_to_its_end_the_watermark_is_the_newest_event() -> None:
    clock = PartitionWatermark()
    clock.observe(0, SUNDAY)
    clock.observe(1, TUESDAY_NIGHT)
    clock.observe(2, SUNDAY - timedelta(days=3))
    assert clock.value(read_to_end={0, 1, 2}) == TUESDAY_NIGHT


def test_the_watermark_never_moves_back_from_the_stored_one() -> None:
    clock = PartitionWatermark()
    assert clock.advance(None, read_to_end=set()) is None
    clock.observe(3, SUNDAY)
    assert clock.advance(None, read_to_end=set()) == SUNDAY
    assert clock.advance(TUESDAY_NIGHT, read_to_end=set()) == TUESDAY_NIGHT
    clock.clear()
    assert clock.advance(SUNDAY, read_to_end=set()) == SUNDAY


instants = st.integers(min_value=0, max_value=14 * 24 * 3600).map(
    lambda s: SUNDAY + timedelta(seconds=s)
)


@given(
    events=st.lists(st.tuples(st.integers(0, 5), instants), min_size=1, max_size=60),
    ended=st.sets(st.integers(0, 5)),
)
def test_the_watermark_is_the_least_maximum_of_the_partitions_still_behind(
    events: list[tuple[int, datetime]], ended: set[int]
) -> None:
    clock = PartitionWatermark()
    for partition, at in events:
        clock.observe(partition, at)
    maxima: dict[int, datetime] = {}
    for partition, at in events:
        maxima[partition] = max(maxima.get(partition, at), at)
    behind = [at for partition, at in maxima.items() if partition not in ended]
    expected = min(behind) if behind else max(maxima.values())
    assert clock.value(read_to_end=ended) == expected
    # Never ahead of what a partition still behind has shown, never behind the oldest.
    assert min(maxima.values()) <= expected <= max(maxima.values())
