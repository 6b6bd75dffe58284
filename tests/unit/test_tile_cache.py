"""The tile cache stays within its bound and drops the least recently used first."""

import re

from hypothesis import given
from hypothesis import strategies as st

from geodata.db.tile_memory import ENTRY_OVERHEAD_BYTES, PUBLIC_TABLES, TileCache
from geodata.db.tiles import _TILE_SQL, LAYERS


@given(
    bound=st.integers(0, 5_000),
    sizes=st.lists(st.integers(0, 2_000), max_size=60),
)
def test_the_cache_never_holds_more_than_its_bound(bound: int, sizes: list[int]) -> None:
    cache = TileCache(bound)
    for i, size in enumerate(sizes):
        cache.put(("grids", 14, i, 0, "s"), b"x" * size)
        assert cache.size_bytes <= bound
        held = sum(len(cache.get(key) or b"") for key in list(cache._tiles))
        assert cache.size_bytes == held + ENTRY_OVERHEAD_BYTES * len(cache)


def test_the_least_recently_used_tile_goes_first() -> None:
    cost = 100 + ENTRY_OVERHEAD_BYTES
    cache = TileCache(3 * cost)
    keys = [("grids", 14, i, 0, "s") for i in range(4)]
    for key in keys[:3]:
        cache.put(key, b"x" * 100)
    assert cache.get(keys[0]) is not None  # now the most recently used
    cache.put(keys[3], b"y" * 100)
    assert cache.get(keys[1]) is None
    assert all(cache.get(key) is not None for key in (keys[0], keys[2], keys[3]))


def test_each_public_layer_is_drawn_from_its_stamped_table_alone() -> None:
    # A layer that joined another table (patrol_weeks for a status colour, say) would
    # change without its stamp moving, and its kept tiles would go stale: its stamp
    # would have to cover that table too.
    for name, layer in LAYERS.items():
        read = set(re.findall(r"\b(?:FROM|JOIN)\s+(\w+)", _TILE_SQL[name].text, re.I))
        assert read - {"b", "features"} == {layer.table}, name
        assert layer.restricted or layer.table in PUBLIC_TABLES
