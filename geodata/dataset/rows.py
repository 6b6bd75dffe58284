"""An import once read: plain rows per layer, what the database holds, and the problems found.

Nothing here reads files, checks a rule or talks to the database; the checks are in
`validation` (codes, attributes, references) and `geometry_checks` (geometries).
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from shapely.geometry.base import BaseGeometry


class Reason(StrEnum):
    """Stable machine-readable reason of a problem; the CLI and the API show these codes."""

    UNSUPPORTED_FORMAT = "unsupported_format"
    UNREADABLE_FILE = "unreadable_file"
    EMPTY_FILE = "empty_file"
    UNRECOGNISED_LAYER = "unrecognised_layer"
    MISSING_COLUMN = "missing_column"
    MISSING_CRS = "missing_crs"
    UNSUPPORTED_CRS = "unsupported_crs"
    WRONG_CRS = "wrong_crs"
    EMPTY_GEOMETRY = "empty_geometry"
    WRONG_GEOMETRY_TYPE = "wrong_geometry_type"
    INVALID_GEOMETRY = "invalid_geometry"
    SELF_INTERSECTION = "self_intersection"
    BAD_CODE = "bad_code"
    DUPLICATE_CODE = "duplicate_code"
    MISSING_VALUE = "missing_value"
    BAD_VALUE = "bad_value"
    MISSING_PARENT = "missing_parent"
    OUTSIDE_PARENT = "outside_parent"
    OVERLAP = "overlap"
    UNKNOWN_GRID = "unknown_grid"
    VALID_FROM_TOO_EARLY = "valid_from_too_early"


@dataclass(frozen=True)
class Problem:
    """One reason to refuse a file: which layer, which feature (code, id or row), why."""

    layer: str
    feature: str | None
    reason: Reason
    detail: str

    def __str__(self) -> str:
        where = self.layer if self.feature is None else f"{self.layer} {self.feature}"
        return f"{where}: {self.reason.value}: {self.detail}"


@dataclass(frozen=True)
class Repair:
    """A polygon that `--repair` made valid, and by how much its area changed (a fraction)."""

    layer: str
    feature: str
    area_change: float

    def __str__(self) -> str:
        return f"{self.layer} {self.feature}: repaired (area changed by {self.area_change:.4%})"


@dataclass(frozen=True)
class Boundary:
    """A district, street, community or grid: code, parent code, attributes, MultiPolygon."""

    code: str
    parent_code: str | None
    name: str
    geom: BaseGeometry
    name_en: str | None = None
    households: int | None = None

    def same_attributes(self, other: "Boundary") -> bool:
        """True when every attribute but the geometry is equal."""
        mine = (self.parent_code, self.name, self.name_en, self.households)
        return mine == (other.parent_code, other.name, other.name_en, other.households)


class Person(NamedTuple):
    """A worker's own attributes, apart from their assignment."""

    name: str
    phone: str | None
    employment: str
    party_role: str | None


@dataclass(frozen=True)
class Worker:
    """A grid worker and the grid they are assigned to from `valid_from` on."""

    worker_id: str
    person: Person
    grid_code: str
    valid_from: datetime


@dataclass(frozen=True)
class Poi:
    """A point of interest and the grid it is stated to lie in."""

    poi_id: str
    name: str
    kind: str
    grid_code: str
    geom: BaseGeometry


@dataclass
class CurrentState:
    """What the database holds now: current boundary versions, workers, assignments, POIs."""

    boundaries: dict[str, dict[str, Boundary]] = field(default_factory=dict)
    grid_valid_from: dict[str, datetime] = field(default_factory=dict)
    workers: dict[str, Person] = field(default_factory=dict)
    #: worker_id → (grid_code, valid_from) of each open assignment, oldest first.
    assignments: dict[str, list[tuple[str, datetime]]] = field(default_factory=dict)
    pois: dict[str, Poi] = field(default_factory=dict)

    def layer(self, name: str) -> dict[str, Boundary]:
        """Current rows of one boundary layer by code (empty when there are none)."""
        return self.boundaries.get(name, {})


@dataclass
class ParsedImport:
    """The file's features as checked rows per layer, and every well-formed code it holds."""

    boundaries: dict[str, list[Boundary]] = field(default_factory=dict)
    codes: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    workers: list[Worker] = field(default_factory=list)
    pois: list[Poi] = field(default_factory=list)
    repairs: list[Repair] = field(default_factory=list)
