"""Fix quality rules: what makes a check-in suspicious but still worth keeping."""

import math
from dataclasses import dataclass
from datetime import datetime

MAX_ACCURACY_M = 100.0
MAX_SPEED_KMH = 200.0
EARTH_RADIUS_M = 6_371_008.8

LOW_ACCURACY = "low_accuracy"
IMPLAUSIBLE_SPEED = "implausible_speed"


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
