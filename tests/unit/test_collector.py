"""A consumer process freezes its startup heap and rarely considers a full collection."""

import gc

from event_consumers.collector import OLDEST_AFTER, tune_for_a_long_lived_heap


def test_the_startup_heap_is_frozen_and_the_oldest_generation_waits_longer() -> None:
    before = gc.get_threshold()
    try:
        tune_for_a_long_lived_heap()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (before[0], before[1], OLDEST_AFTER)
        assert before[2] < OLDEST_AFTER
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
