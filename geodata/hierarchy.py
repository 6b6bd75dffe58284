"""The grid hierarchy encoded in codes: a prefix selects a subtree (docs/DATASET.md)."""

from dataclasses import dataclass

DISTRICT_CODE_LENGTH = 6
STREET_CODE_LENGTH = 9
COMMUNITY_CODE_LENGTH = 12
GRID_CODE_LENGTH = 15


@dataclass(frozen=True)
class GridLineage:
    """A grid's code with the codes of its community, street office and district."""

    grid_code: str
    community_code: str
    street_code: str
    district_code: str


def lineage_of(grid_code: str) -> GridLineage:
    """Split a 15-digit grid code into its ancestors' codes."""
    if len(grid_code) != GRID_CODE_LENGTH or not grid_code.isdigit():
        raise ValueError(f"not a grid code: {grid_code!r}")
    return GridLineage(
        grid_code,
        grid_code[:COMMUNITY_CODE_LENGTH],
        grid_code[:STREET_CODE_LENGTH],
        grid_code[:DISTRICT_CODE_LENGTH],
    )
