"""The compliance engine's copy of check-ins: what it holds, adds, forgets and evicts."""

import uuid
from datetime import UTC, datetime, timedelta

from event_consumers.checkin_cache import CheckinCache
from geodata.compliance import CheckinRecord, ComplianceKey, IsoWeek

WEEK = IsoWeek.parse("2020-W37")
T0 = datetime(2020, 9, 7, 1, 0, tzinfo=UTC)


def _checkins(n: int, worker: str = "W00001") -> list[CheckinRecord]:
    return [
        CheckinRecord(uuid.uuid4(), worker, "610302001001001", T0 + timedelta(minutes=i), 8.0)
        for i in range(n)
    ]


def _key(worker: str = "W00001") -> ComplianceKey:
    return ComplianceKey(worker, "610302001001001", WEEK)


def test_a_key_not_read_yet_is_not_held_and_adding_to_it_does_nothing() -> None:
    cache = CheckinCache()
    cache.add(_key(), _checkins(3))
    assert cache.get(_key()) is None
    assert len(cache) == 0


def test_a_held_key_gets_the_new_checkins_appended_and_get_returns_a_copy() -> None:
    cache = CheckinCache()
    stored, new = _checkins(3), _checkins(2)
    cache.put(_key(), stored)
    cache.add(_key(), new)
    held = cache.get(_key())
    assert held == stored + new
    assert held is not None
    held.clear()  # the caller's list is its own
    assert cache.get(_key()) == stored + new
    assert len(cache) == 5


def test_put_replaces_what_a_key_held() -> None:
    cache = CheckinCache()
    cache.put(_key(), _checkins(4))
    again = _checkins(2)
    cache.put(_key(), again)
    assert cache.get(_key()) == again
    assert len(cache) == 2


def test_the_least_recently_used_keys_go_first_beyond_the_limit() -> None:
    cache = CheckinCache(max_checkins=10)
    for worker in ("W00001", "W00002", "W00003"):
        cache.put(_key(worker), _checkins(4, worker))
    # 12 > 10: the oldest key went; the two others stay.
    assert cache.get(_key("W00001")) is None
    assert cache.held_keys() == [_key("W00002"), _key("W00003")]
    cache.get(_key("W00002"))  # now the most recently used
    cache.put(_key("W00004"), _checkins(4, "W00004"))
    assert cache.held_keys() == [_key("W00002"), _key("W00004")]
    assert len(cache) == 8


def test_discard_and_clear_forget() -> None:
    cache = CheckinCache()
    cache.put(_key("W00001"), _checkins(2))
    cache.put(_key("W00002"), _checkins(3, "W00002"))
    cache.discard(_key("W00001"))
    assert cache.get(_key("W00001")) is None
    assert len(cache) == 3
    cache.clear()
    assert cache.held_keys() == []
    assert len(cache) == 0
