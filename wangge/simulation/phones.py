"""What each simulated phone records during the week, and when it gets it to the broker.

A phone takes a fix every 30 s on a walk (and an idle ping after the week), stamps it
with its own clock, and normally delivers it within seconds; sometimes it is offline and
uploads a whole walk hours later, in one batch, perhaps twice, perhaps out of order; and
now and then a retry sends a fix again.
"""

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Final, Self

import numpy as np
import numpy.typing as npt
from shapely.geometry.base import BaseGeometry

from geodata.compliance import IsoWeek
from wangge.simulation.plan import SimulationConfig, WorkerPlan
from wangge.simulation.walks import (
    FixQuality,
    GridShape,
    gps_error,
    poor_fixes,
    positions_along,
    report,
    safely_inside,
    teleports,
)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

NO_WALK: Final = -1
"""The `walk` of an idle ping."""

# Fixes of one upload batch leave the phone this far apart (s): one burst, in order.
_BATCH_SPACING_S: Final = 0.002


@dataclass(frozen=True)
class FixTable:
    """Fixes column by column; `in_grid` marks those planned safely inside the walk's grid."""

    worker: IntArray
    walk: IntArray
    true_s: IntArray
    recorded_s: IntArray
    lon: FloatArray
    lat: FloatArray
    accuracy: FloatArray  # NaN when the phone does not report one
    quality: IntArray
    in_grid: npt.NDArray[np.bool_]
    ids: npt.NDArray[np.uint8]  # (n, 16): UUID4 bytes

    def __len__(self) -> int:
        return len(self.true_s)

    @classmethod
    def concat(cls, tables: list[Self]) -> Self:
        """One table of many, in order."""
        return cls(*(np.concatenate([getattr(t, f.name) for t in tables]) for f in fields(cls)))


@dataclass(frozen=True)
class Deliveries:
    """Which fix (or other message) leaves when: one row per message sent, duplicates too."""

    index: IntArray
    send_s: FloatArray
    late: npt.NDArray[np.bool_]


def epoch_s(t: datetime) -> int:
    """Whole epoch seconds of an aware datetime."""
    return int(t.timestamp())


def uuid4_bytes(rng: np.random.Generator, count: int) -> npt.NDArray[np.uint8]:
    """`count` random UUID4s as rows of 16 bytes (version and variant bits set)."""
    ids = np.frombuffer(rng.bytes(16 * count), dtype=np.uint8).reshape(count, 16).copy()
    ids[:, 6] = (ids[:, 6] & 0x0F) | 0x40
    ids[:, 8] = (ids[:, 8] & 0x3F) | 0x80
    return ids


def _accuracy(rng: np.random.Generator, count: int, noise_m: float, reports: bool) -> FloatArray:
    if not reports:
        return np.full(count, np.nan)
    return np.round(noise_m * rng.uniform(0.8, 1.5, size=count), 1)


def _place(
    shape: GridShape, xy: FloatArray, noisy: FloatArray, crs: str
) -> tuple[FloatArray, FloatArray]:
    """Reported coordinates of in-grid fixes, each checked to land safely inside."""
    reported = report(noisy, crs)
    bad = ~safely_inside(shape, reported)
    if bad.any():
        # The error pushed it over after conversion and rounding: fall back to the path,
        # then to the grid's deepest point.
        noisy = noisy.copy()
        noisy[bad] = xy[bad]
        reported = report(noisy, crs)
        bad = ~safely_inside(shape, reported)
        noisy[bad] = shape.centre
        reported = report(noisy, crs)
        if not safely_inside(shape, reported).all():
            raise RuntimeError(f"grid {shape.code} is too thin to place a fix safely inside")
    return reported.lon, reported.lat


def _walk_fixes(
    plan: WorkerPlan,
    number: int,
    shapes: dict[str, GridShape],
    avoid: list[BaseGeometry],
    config: SimulationConfig,
    rng: np.random.Generator,
) -> tuple[IntArray, FloatArray, FloatArray, FloatArray, IntArray, npt.NDArray[np.bool_]]:
    walk, phone = plan.walks[number], plan.phone
    shape = shapes[walk.grid_code]
    interval = config.fix_interval_s
    count = int(walk.minutes * 60 // interval) + 1
    # Phones are not metronomes: up to 2 s late, never enough to reorder their own fixes.
    true_s = epoch_s(walk.start) + np.arange(count) * interval + rng.integers(0, 3, size=count)
    speed = rng.uniform(*config.walking_speed_m_s)
    steps = speed * interval * rng.uniform(0.5, 1.3, size=count)
    steps[rng.random(count) < 0.08] = rng.uniform(0.0, 5.0)  # stops: a chat, a doorway
    distances = np.concatenate([[0.0], np.cumsum(steps[1:])])
    xy = positions_along(shape.route(float(distances[-1]) + 50.0, rng), distances)

    quality = np.full(count, FixQuality.GOOD, dtype=np.int64)
    if phone.reports_accuracy:  # without an accuracy a poor fix could not be told apart
        quality[rng.random(count) < config.poor_accuracy_share] = FixQuality.POOR_ACCURACY
    quality[(rng.random(count) < config.teleport_share) & (quality == 0)] = FixQuality.TELEPORT
    accuracy = _accuracy(rng, count, phone.noise_m, phone.reports_accuracy)
    poor = quality == FixQuality.POOR_ACCURACY
    accuracy[poor] = np.round(rng.uniform(*config.poor_accuracy_m, size=int(poor.sum())), 1)

    good = quality == FixQuality.GOOD
    lon, lat = np.empty(count), np.empty(count)
    noisy = gps_error(shape, xy[good], phone.noise_m, rng)
    lon[good], lat[good] = _place(shape, xy[good], noisy, phone.crs)
    bad = ~good
    if bad.any():
        moved = xy[bad].copy()
        moved[poor[bad]] = poor_fixes(xy[poor], accuracy[poor], rng)
        jumped = quality[bad] == FixQuality.TELEPORT
        moved[jumped] = teleports(moved[jumped], avoid, config.teleport_km, rng)
        reported = report(moved, phone.crs)
        lon[bad], lat[bad] = reported.lon, reported.lat
    return true_s, lon, lat, accuracy, quality, good


def worker_fixes(
    plan: WorkerPlan,
    worker_index: int,
    shapes: dict[str, GridShape],
    ping_times: IntArray,
    config: SimulationConfig,
    rng: np.random.Generator,
) -> FixTable:
    """Every fix of the worker's walks, then their idle pings at `ping_times` (true time)."""
    phone = plan.phone
    avoid = [shapes[p.grid_code].metric for p in plan.worker.periods if p.grid_code in shapes]
    parts: list[tuple[npt.NDArray[Any], ...]] = []
    for number in range(len(plan.walks)):
        true_s, lon, lat, accuracy, quality, good = _walk_fixes(
            plan, number, shapes, avoid, config, rng
        )
        walk = np.full(len(true_s), number, dtype=np.int64)
        parts.append((walk, true_s, lon, lat, accuracy, quality, good))
    if len(ping_times):
        shape = shapes[plan.worker.grid_code]
        xy = np.vstack([shape.interior_point(rng) for _ in ping_times])
        lon, lat = _place(shape, xy, gps_error(shape, xy, phone.noise_m, rng), phone.crs)
        count = len(ping_times)
        parts.append(
            (
                np.full(count, NO_WALK, dtype=np.int64),
                ping_times.astype(np.int64),
                lon,
                lat,
                _accuracy(rng, count, phone.noise_m, phone.reports_accuracy),
                np.full(count, FixQuality.GOOD, dtype=np.int64),
                np.ones(count, dtype=bool),
            )
        )
    if not parts:
        return _empty()
    walk, true_s, lon, lat, accuracy, quality, good = (
        np.concatenate([p[k] for p in parts]) for k in range(7)
    )
    return FixTable(
        worker=np.full(len(true_s), worker_index, dtype=np.int64),
        walk=walk.astype(np.int64),
        true_s=true_s.astype(np.int64),
        recorded_s=true_s.astype(np.int64) + phone.clock_skew_s,
        lon=lon.astype(np.float64),
        lat=lat.astype(np.float64),
        accuracy=accuracy.astype(np.float64),
        quality=quality.astype(np.int64),
        in_grid=good.astype(bool),
        ids=uuid4_bytes(rng, len(true_s)),
    )


def _empty() -> FixTable:
    ints = np.empty(0, dtype=np.int64)
    floats = np.empty(0, dtype=np.float64)
    return FixTable(
        ints, ints, ints, ints, floats, floats, floats, ints, np.empty(0, dtype=bool),
        np.empty((0, 16), dtype=np.uint8),
    )  # fmt: skip


def deliveries(
    fixes: FixTable,
    offset: int,
    week: IsoWeek,
    config: SimulationConfig,
    rng: np.random.Generator,
) -> tuple[Deliveries, int]:
    """When each of one worker's fixes reaches the broker; and how many walks went late.

    `offset` is the position of the worker's first fix in the city-wide table. An
    offline phone uploads the rest of a walk in one batch, before the week's results
    freeze (its end plus the allowed lateness), so nothing it sends may be ignored.
    """
    send = fixes.true_s + rng.uniform(*config.network_delay_s, size=len(fixes))
    late = np.zeros(len(fixes), dtype=bool)
    index = np.arange(len(fixes), dtype=np.int64)
    extra_index: list[IntArray] = []
    extra_send: list[FloatArray] = []
    freeze = epoch_s(week.end(config.compliance.tz) + config.compliance.allowed_lateness)
    late_walks = 0
    for number in np.unique(fixes.walk[fixes.walk >= 0]).tolist():
        if rng.random() >= config.offline_walk_share:
            continue
        late_walks += 1
        rows = np.flatnonzero(fixes.walk == number)
        rows = rows[int(rng.integers(0, len(rows))) :]  # offline from some fix on
        delay = rng.uniform(*config.offline_delay_hours) * 3600.0
        upload = min(float(fixes.true_s[rows[-1]]) + delay, freeze - 3600.0)
        if rng.random() < config.out_of_order_batch_share:
            rows = rng.permutation(rows)
        send[rows] = upload + np.arange(len(rows)) * _BATCH_SPACING_S
        late[rows] = True
        if rng.random() < config.batch_retry_share:  # the upload timed out, sent again
            extra_index.append(rows)
            extra_send.append(send[rows] + rng.uniform(5.0, 120.0))
    again = np.flatnonzero(rng.random(len(fixes)) < config.duplicate_share)
    extra_index.append(again)
    extra_send.append(send[again] + rng.uniform(*config.duplicate_delay_s, size=len(again)))
    all_index = np.concatenate([index, *extra_index])
    return (
        Deliveries(
            index=all_index + offset,
            send_s=np.concatenate([send, *extra_send]),
            late=np.concatenate([late, *(late[i] for i in extra_index)]),
        ),
        late_walks,
    )


def shapes_for(grids: dict[str, BaseGeometry], codes: set[str]) -> dict[str, GridShape]:
    """Metric shapes of the named grids."""
    return {code: GridShape(code, grids[code]) for code in sorted(codes)}
