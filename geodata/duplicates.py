"""Probable duplicates: which open case a new report is likely a second report of.

A new report is a probable duplicate of an open case (any status but closed and
cancelled) of the same category reported within `DuplicateRule.window` of it (either
side) and within `DuplicateRule.radius_m` metres of it on the ellipsoid. The consumer
links it to the nearest such case when it files the report; the gateway shows the
reporter the same candidates at once. A supervisor then confirms the link (the report is
cancelled as a duplicate, its reporter follows the original) or splits it (the link
goes, the case proceeds): `confirm_duplicate` and `split` in `geodata.incidents`.

A case already linked as a duplicate is never an original itself, so no chain forms.
Pure: the queries are in `geodata.db.duplicate_store`.
"""

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from geodata.accounts import Principal, Role

DEFAULT_RADIUS_M: Final = 50.0
DEFAULT_WINDOW: Final = timedelta(hours=24)
MAX_PROBABLE_ORIGINALS: Final = 5
"""Most candidates the gateway returns to a reporter, nearest first."""

_METRES_PER_DEGREE_OF_LATITUDE: Final = 111_320.0
# Latitude whose cosine bounds the search box: beyond it a box would span the globe.
_MAX_BOX_LATITUDE: Final = 85.0


@dataclass(frozen=True, slots=True)
class DuplicateRule:
    """How near in space and time a report must be to an open case to be linked to it."""

    radius_m: float = DEFAULT_RADIUS_M
    window: timedelta = DEFAULT_WINDOW

    def __post_init__(self) -> None:
        if not self.radius_m > 0 or not self.window > timedelta(0):
            raise ValueError("a duplicate rule needs a positive radius and a positive window")


def search_box_degrees(radius_m: float, lat: float) -> tuple[float, float]:
    """Half-width and half-height in degrees of a box around a point at `lat` that holds
    every point within `radius_m` on the ellipsoid: the index's filter before the exact test.

    Doubled over the spherical figure, so the ellipsoid's flattening (under 1 %) never
    lets a point fall outside.
    """
    cos_lat = math.cos(math.radians(min(abs(lat), _MAX_BOX_LATITUDE)))
    half_height = 2 * radius_m / _METRES_PER_DEGREE_OF_LATITUDE
    return half_height / cos_lat, half_height


def may_read_as_follower(principal: Principal, follower_workers: frozenset[str]) -> bool:
    """Whether a worker may read an original because it reported a confirmed duplicate of it."""
    return (
        principal.role is Role.WORKER
        and principal.worker_id is not None
        and principal.worker_id in follower_workers
    )
