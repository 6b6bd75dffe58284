"""Rendered answers kept while the tables they were read from have not changed.

A read that costs tens to hundreds of milliseconds, asked again and again (a map's
panel, a dashboard), is kept as the bytes sent, beside a stamp of the data it was made
from: the highest id of the tables whose writes change it, found with an index lookup
or two. An answer is served again while the stamp has not moved, and for `max_age_s` at
most, which bounds what a write the stamp does not see (a transaction that took a lower
id but committed later, a delete) could leave unseen. The evaluation and the coverage
reads keep their answers this way; each says what its stamp is.
"""

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

MAX_AGE_S: Final = 30.0
KEPT_ANSWERS: Final = 64

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class _Kept:
    stamp: Hashable
    made: float
    body: bytes


class KeptAnswers(Generic[K]):
    """The last `size` answers by key, each kept while `stamp()` returns what it did."""

    def __init__(
        self,
        stamp: Callable[[], Hashable],
        *,
        max_age_s: float = MAX_AGE_S,
        size: int = KEPT_ANSWERS,
    ) -> None:
        self._stamp = stamp
        self._max_age_s = max_age_s
        self._size = size
        self._kept: OrderedDict[K, _Kept] = OrderedDict()
        self._lock = threading.Lock()

    def answer(self, key: K, make: Callable[[], bytes]) -> bytes:
        """The kept answer for `key`, or `make()`'s, kept (its errors pass, nothing kept)."""
        stamp = self._stamp()  # before the read: a change during it moves the next stamp
        now = time.monotonic()
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None and kept.stamp == stamp and now - kept.made < self._max_age_s:
                self._kept.move_to_end(key)
                return kept.body
        body = make()
        with self._lock:
            self._kept[key] = _Kept(stamp, now, body)
            self._kept.move_to_end(key)
            while len(self._kept) > self._size:
                self._kept.popitem(last=False)
        return body
