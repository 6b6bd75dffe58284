"""Fix quality rules: what makes a check-in suspicious but still worth keeping.

`quality_flags` judges one fix; `flag_fixes` judges a batch with numpy and gives the very
same flags (a property test holds the two together).
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from geodata.spatial_index import to_epoch_us

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MAX_ACCURACY_M = 100.0
MAX_SPEED_KMH = 200.0
EARTH_RADIUS_M = 6_371_008.8

LOW_ACCURACY = "low_accuracy"
IMPLAUSIBLE_SPEED = "implausible_speed"
MOCKED = "mocked"
"""The phone or tracking app said the fix came from a mock-location provider (`mock`)."""


@dataclass(frozen=True)
class Fix:
    """A worker's position at a time (WGS84)."""

    recorded_at: datetime
    lon: float
    lat: float


def haversine_m(a: Fix, b: Fix) -> float:
    """Great-circle distance in metres; plenty for a speed plausibility check."""
    phi1, phi2 = math.radians(a.lat), math.radians(b.lat)
    dphi = phi2 - phi1
    dlmb = math.radians(b.lon - a.lon)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def implied_speed_kmh(previous: Fix, current: Fix) -> float:
    """Speed needed to go from one fix to the other; infinite for a jump in no time."""
    seconds = abs((current.recorded_at - previous.recorded_at).total_seconds())
    metres = haversine_m(previous, current)
    if seconds == 0:
        return 0.0 if metres == 0 else math.inf
    return metres / seconds * 3.6


def quality_flags(
    accuracy_m: float | None,
    current: Fix,
    previous: Fix | None,
    *,
    max_accuracy_m: float = MAX_ACCURACY_M,
    max_speed_kmh: float = MAX_SPEED_KMH,
) -> list[str]:
    """Flags for a fix: poor accuracy, or a jump faster than anyone walks or drives."""
    flags = []
    if accuracy_m is not None and accuracy_m > max_accuracy_m:
        flags.append(LOW_ACCURACY)
    if previous is not None and implied_speed_kmh(previous, current) > max_speed_kmh:
        flags.append(IMPLAUSIBLE_SPEED)
    return flags


# Speeds this close to the limit are recomputed with the scalar rule, so that numpy's and
# libm's last-bit differences can never flip a flag.
_SPEED_RECHECK_REL = 1e-9


class FixFlags(NamedTuple):
    """The flags of a batch of fixes, in input order, and each worker's newest fix since."""

    flags: list[list[str]]
    latest: dict[str, Fix]


def flag_fixes(
    worker_ids: Sequence[str],
    recorded_at: Sequence[datetime],
    at_us: IntArray,
    lon: FloatArray,
    lat: FloatArray,
    accuracy_m: FloatArray,
    last: Mapping[str, Fix],
    *,
    max_accuracy_m: float = MAX_ACCURACY_M,
    max_speed_kmh: float = MAX_SPEED_KMH,
) -> FixFlags:
    """`quality_flags` of every fix of a batch, vectorised.

    Fixes are taken in event-time order; each is compared with its worker's previous
    one: the newest seen so far, from the batch or from `last` (the newest before it).
    `at_us` is `recorded_at` in microseconds since the epoch (`to_epoch_us`), which the
    caller has computed already; NaN in `accuracy_m` is an unknown accuracy. `latest`
    holds the workers whose newest fix is now one of the batch's.
    """
    n = len(worker_ids)
    worker_rank = np.unique(np.array(worker_ids, dtype=object), return_inverse=True)[1]
    by_time = np.argsort(at_us, kind="stable")
    order = by_time[np.argsort(worker_rank[by_time], kind="stable")]
    w, t, x, y = worker_rank[order], at_us[order], lon[order], lat[order]
    first = np.ones(n, dtype=bool)
    first[1:] = w[1:] != w[:-1]

    cached = [last.get(worker_ids[i]) for i in order.tolist()]
    has_cached = np.array([fix is not None for fix in cached], dtype=bool)
    cached_t = np.array([to_epoch_us(f.recorded_at) if f else 0 for f in cached], np.int64)
    cached_x = np.array([f.lon if f else np.nan for f in cached], float)
    cached_y = np.array([f.lat if f else np.nan for f in cached], float)
    prev_t, prev_x, prev_y = np.roll(t, 1), np.roll(x, 1), np.roll(y, 1)
    # The previous batch fix replaced the stored one only if it was not older.
    from_batch = ~first & (~has_cached | (prev_t >= cached_t))
    has_prev = from_batch | has_cached
    prev_t = np.where(from_batch, prev_t, cached_t)
    prev_x = np.where(from_batch, prev_x, cached_x)
    prev_y = np.where(from_batch, prev_y, cached_y)

    speed = _speeds_kmh(prev_t, prev_x, prev_y, t, x, y)
    near = has_prev & (np.abs(speed - max_speed_kmh) <= _SPEED_RECHECK_REL * max_speed_kmh)
    for j in np.flatnonzero(near).tolist():
        previous = cached[j]
        if from_batch[j] or previous is None:
            previous = _fix(int(order[j - 1]), recorded_at, lon, lat)
        speed[j] = implied_speed_kmh(previous, _fix(int(order[j]), recorded_at, lon, lat))
    fast = np.zeros(n, dtype=bool)
    fast[order] = has_prev & (speed > max_speed_kmh)
    low = accuracy_m > max_accuracy_m

    newest = np.ones(n, dtype=bool)
    newest[:-1] = w[:-1] != w[1:]
    latest = {
        worker_ids[i]: _fix(i, recorded_at, lon, lat)
        for i in order[newest & (~has_cached | (t >= cached_t))].tolist()
    }
    flags = [
        [LOW_ACCURACY, IMPLAUSIBLE_SPEED]
        if lo and fa
        else [LOW_ACCURACY]
        if lo
        else [IMPLAUSIBLE_SPEED]
        if fa
        else []
        for lo, fa in zip(low.tolist(), fast.tolist(), strict=True)
    ]
    return FixFlags(flags, latest)


def _fix(i: int, recorded_at: Sequence[datetime], lon: FloatArray, lat: FloatArray) -> Fix:
    return Fix(recorded_at[i], float(lon[i]), float(lat[i]))


def _speeds_kmh(
    t0: IntArray, x0: FloatArray, y0: FloatArray, t1: IntArray, x1: FloatArray, y1: FloatArray
) -> FloatArray:
    """`implied_speed_kmh` over arrays: haversine metres over |Δt|, km/h; 0 with no x0."""
    phi0, phi1 = np.radians(y0), np.radians(y1)
    h = (
        np.sin((phi1 - phi0) / 2) ** 2
        + np.cos(phi0) * np.cos(phi1) * np.sin(np.radians(x1 - x0) / 2) ** 2
    )
    metres = 2 * EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(h)))
    seconds = np.abs(t1 - t0) / 1e6
    with np.errstate(divide="ignore", invalid="ignore"):
        speed = metres / seconds * 3.6
    speed[seconds == 0] = np.where(metres[seconds == 0] == 0, 0.0, np.inf)
    return np.where(np.isnan(x0), 0.0, speed)
