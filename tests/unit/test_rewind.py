"""Where a failed batch's partitions are sought back to."""

from event_consumers.batch import rewind_offset


def test_a_batch_is_read_again_from_its_first_record() -> None:
    assert rewind_offset(10, 25) == 10


def test_never_past_where_an_earlier_rewind_put_the_partition() -> None:
    assert rewind_offset(10, 4) == 4


def test_position_zero_is_the_first_record_not_an_unknown_position() -> None:
    # The broker-restart fault lost 10 check-ins: the batch in flight was rewound to 0 on
    # a topic made anew, and the next batch's rewind took 0 for "unknown" and sought to 10.
    assert rewind_offset(10, 0) == 0


def test_an_unknown_position_is_left_to_its_reset_which_reads_from_the_start() -> None:
    assert rewind_offset(10, None) is None
