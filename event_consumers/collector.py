"""How a consumer process runs Python's cyclic garbage collector.

A consumer holds a large, long-lived heap: the grid snapshot and the coverage lattices in
the storage stage, and in the compliance stage the folds of the open weeks (a million
check-ins at the city's scale, some three million objects). CPython's collector walks the
whole heap in a full collection, which it starts whenever the objects that survived into
the oldest generation since the last one reach a quarter of it. Measured in `wangge bench
compliance` (all 2,381 workers): the storage stage ran 155 full collections in five
minutes, 38 s in all, and the compliance stage paused 1.4 – 3.1 s at a time, which was the
whole arrival → status p99 (3.2 – 4.4 s at 1,000 check-ins/s).

Almost all of a batch's garbage is freed by reference counting; cycles are few and die
young, in the young generations, which run as CPython sets them. So a consumer process
freezes what startup made (never garbage) and considers a full collection only after
`OLDEST_AFTER` collections of the middle generation instead of 10: at the rates measured
here, some minutes to an hour apart rather than every second.
"""

import gc
from typing import Final

#: Collections of the middle generation before a full one is considered (CPython: 10).
OLDEST_AFTER: Final = 10_000


def tune_for_a_long_lived_heap() -> None:
    """Call once at the start of a consumer process, after its imports."""
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, OLDEST_AFTER)
