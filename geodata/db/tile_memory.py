"""The public tile layers' data stamps and rendered tiles, held in memory.

With them a tile route answers a revalidation (304) or a tile it has rendered before
without touching the database: the ETag is the layer's stamp as `StampWatch` last read
it (no older than its `max_age_s`, so a change shows within that), and a tile is kept
under the stamp of the rows it was drawn from, so a kept tile is never served under
another stamp. The grids layer draws the versions in force, so its stamp also names the
next instant a dated version starts or ends: the instants ahead are read with the
stamps, and the layer's stamp moves on at each of them, on time, without a read. The
incidents layer is cut per caller and changes by the second: it is neither stamped nor
kept here.
"""

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import Connection, Engine

from geodata.db.stamps import StampWatch, read_table_stamps
from geodata.db.tiles import LAYERS, TileLayer, stamp_at, version_changes

TileKey = tuple[str, int, int, int, str]
"""(layer, z, x, y, data stamp)."""

#: What an entry costs beyond its tile's bytes (key, node, bytes object), roughly; so that
#: many empty tiles are bounded too.
ENTRY_OVERHEAD_BYTES: Final = 200
DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024
#: Tiles one API process draws at once (settings: WANGGE_TILE_DRAWS); the others wait
#: their turn. Sixteen drawn together on a database's two cores share them, so a tile of
#: many grids took its share sixteen times and the tail grew; four at once cut the p99 of
#: z12 tiles by about a quarter for a tenth of the throughput (docs/BENCHMARKS.md).
DEFAULT_DRAWS: Final = 4

PUBLIC_TABLES: Final = tuple(
    sorted({layer.table for layer in LAYERS.values() if not layer.restricted})
)
"""The tables the public layers are drawn from, each layer from its own table alone."""


@dataclass(frozen=True)
class PublicStamps:
    """The public tables' stamps, and the instants ahead at which a dated layer's versions
    in force change (`version_changes`, by layer name), read in one transaction."""

    tables: Mapping[str, str]
    changes: Mapping[str, tuple[int, ...]]


def read_public_stamps(connection: Connection, now: datetime) -> PublicStamps:
    """The public tables' stamps and the dated layers' changes after `now`."""
    # One snapshot for both reads: a version imported between them cannot be half seen.
    connection.execution_options(isolation_level="REPEATABLE READ")
    tables = read_table_stamps(connection, PUBLIC_TABLES)
    changes = {
        layer.name: version_changes(connection, layer, now)
        for layer in LAYERS.values()
        if layer.validity is not None and not layer.restricted
    }
    return PublicStamps(tables, changes)


class TileCache:
    """Rendered tiles by (layer, z, x, y, stamp); the least recently used go beyond a size.

    Thread-safe; each call holds a lock for a dictionary operation or two.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self._tiles: OrderedDict[TileKey, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def size_bytes(self) -> int:
        """The bytes held, overhead included; never above `max_bytes`."""
        return self._bytes

    def __len__(self) -> int:
        """Tiles held."""
        return len(self._tiles)

    def get(self, key: TileKey) -> bytes | None:
        """The tile kept under `key`, now the most recently used; None if not kept."""
        with self._lock:
            tile = self._tiles.get(key)
            if tile is not None:
                self._tiles.move_to_end(key)
            return tile

    def put(self, key: TileKey, tile: bytes) -> None:
        """Keep `tile` under `key`, dropping the least recently used beyond `max_bytes`."""
        cost = len(tile) + ENTRY_OVERHEAD_BYTES
        if cost > self.max_bytes:
            return
        with self._lock:
            old = self._tiles.pop(key, None)
            if old is not None:
                self._bytes -= len(old) + ENTRY_OVERHEAD_BYTES
            self._tiles[key] = tile
            self._bytes += cost
            while self._bytes > self.max_bytes:
                _, dropped = self._tiles.popitem(last=False)
                self._bytes -= len(dropped) + ENTRY_OVERHEAD_BYTES


class TileMemory:
    """The public layers' stamps, re-read in the background, and the tiles rendered."""

    def __init__(
        self,
        engine: Engine,
        max_age_s: float,
        max_bytes: int = DEFAULT_MAX_BYTES,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """Stamps trusted for `max_age_s` (0: none kept), at most `max_bytes` of tiles;
        `now` is the wall clock the versions in force are chosen by, as the tiles' SQL's."""
        self._now = now
        self.stamps = StampWatch(
            engine, lambda connection: read_public_stamps(connection, now()), max_age_s, clock=clock
        )
        self.tiles = TileCache(max_bytes)

    def now(self) -> datetime:
        """The instant the stamps and the tiles drawn for them choose the versions in force by."""
        return self._now()

    def stamp(self, layer: TileLayer) -> str | None:
        """The layer's data stamp from memory, as `data_stamp` gives it now; None if
        restricted or none is fresh."""
        stamps = self.stamps.fresh()
        if stamps is None or layer.restricted:
            return None
        table = stamps.tables[layer.table]
        changes = stamps.changes.get(layer.name)
        return table if changes is None else stamp_at(layer, table, changes, self._now())

    def start(self) -> None:
        """Start re-reading the stamps in the background."""
        self.stamps.start()

    def stop(self) -> None:
        """Stop re-reading the stamps."""
        self.stamps.stop()
