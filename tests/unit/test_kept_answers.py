"""KeptAnswers: an answer is made again when its stamp moves or it grows too old."""

import pytest

from geodata.db.kept_answers import KeptAnswers


class Counter:
    """A stamp that moves when told, and renderings that count how often they were made."""

    def __init__(self) -> None:
        self.stamp = 0
        self.made = 0

    def make(self) -> bytes:
        self.made += 1
        return b"answer %d" % self.made


def test_an_answer_is_kept_while_the_stamp_stands_and_made_again_when_it_moves() -> None:
    data = Counter()
    kept: KeptAnswers[str] = KeptAnswers(lambda: data.stamp)
    assert kept.answer("city", data.make) == b"answer 1"
    assert kept.answer("city", data.make) == b"answer 1"
    assert kept.answer("street", data.make) == b"answer 2"  # another key, its own answer
    data.stamp += 1
    assert kept.answer("city", data.make) == b"answer 3"
    assert data.made == 3


def test_an_answer_older_than_max_age_is_made_again() -> None:
    data = Counter()
    kept: KeptAnswers[str] = KeptAnswers(lambda: data.stamp, max_age_s=0.0)
    kept.answer("city", data.make)
    kept.answer("city", data.make)
    assert data.made == 2


def test_the_least_recently_used_answer_goes_first() -> None:
    data = Counter()
    kept: KeptAnswers[str] = KeptAnswers(lambda: data.stamp, size=2)
    kept.answer("a", data.make)
    kept.answer("b", data.make)
    kept.answer("a", data.make)  # a used again: b is now the oldest
    kept.answer("c", data.make)
    assert data.made == 3
    kept.answer("a", data.make)
    assert data.made == 3
    kept.answer("b", data.make)
    assert data.made == 4


def test_a_failed_read_keeps_nothing() -> None:
    data = Counter()
    kept: KeptAnswers[str] = KeptAnswers(lambda: data.stamp)

    def fail() -> bytes:
        raise RuntimeError("database gone")

    with pytest.raises(RuntimeError):
        kept.answer("city", fail)
    assert kept.answer("city", data.make) == b"answer 1"
