"""The deadline engine's event-time clock (event_consumers.deadlines.EventTimeClock)."""

from datetime import UTC, datetime, timedelta

from event_consumers.deadlines import EventTimeClock


def test_the_clock_is_the_newest_event_time_running_on_at_wall_rate_never_backwards() -> None:
    wall = [100.0]
    clock = EventTimeClock(monotonic=lambda: wall[0])
    assert clock.now() is None  # no event seen: nothing falls due
    night = datetime(2020, 9, 8, 2, 0, tzinfo=UTC)
    clock.observe(night)
    assert clock.now() == night
    wall[0] += 1800  # half an hour of quiet night
    assert clock.now() == night + timedelta(minutes=30)
    clock.observe(night + timedelta(minutes=10))  # a late event: the clock stays
    assert clock.now() == night + timedelta(minutes=30)
    clock.observe(night + timedelta(hours=1))  # a newer one moves it on
    assert clock.now() == night + timedelta(hours=1)
