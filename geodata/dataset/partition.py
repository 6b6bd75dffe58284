"""Planar partitions: which cells touch, and splitting cells into connected groups.

Used by the generator to cut one tessellation into streets, communities and grids with
exact counts, so that every level is a union of whole cells and nests exactly.
"""

import heapq
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import shapely

IntArray = npt.NDArray[np.intp]
FloatArray = npt.NDArray[np.float64]
GeomArray = npt.NDArray[np.object_]

# Directions tried by the bisection, as turns away from the long axis (radians).
CUT_TURNS = tuple(np.pi * np.array([0, 1, -1, 2, -2, 3, -3, 4]) / 8)


def cell_neighbours(cells: GeomArray) -> list[list[int]]:
    """For each cell, the cells that share an edge (not just a corner) with it."""
    left, right = shapely.STRtree(cells).query(cells, predicate="intersects")
    keep = left < right
    left, right = left[keep], right[keep]
    boundaries = shapely.boundary(cells)
    shared = shapely.length(shapely.intersection(boundaries[left], boundaries[right]))
    result: list[list[int]] = [[] for _ in range(len(cells))]
    for i, j, length in zip(left.tolist(), right.tolist(), shared.tolist(), strict=True):
        if length > 0:
            result[i].append(j)
            result[j].append(i)
    return [sorted(adjacent) for adjacent in result]


def partition_cells(
    members: IntArray, sizes: Sequence[int], xy: FloatArray, neighbours: list[list[int]]
) -> list[IntArray]:
    """Recursive bisection of `members` into connected groups of exactly `sizes` cells."""
    if len(sizes) == 1:
        return [members]
    half = len(sizes) // 2
    left = _cut(members, sum(sizes[:half]), xy, neighbours)
    right = np.setdiff1d(members, left)
    return partition_cells(left, sizes[:half], xy, neighbours) + partition_cells(
        right, sizes[half:], xy, neighbours
    )


def _cut(members: IntArray, n: int, xy: FloatArray, neighbours: list[list[int]]) -> IntArray:
    """`n` connected cells from one side of `members`, leaving a connected rest if possible."""
    centred = xy[members] - xy[members].mean(axis=0)
    _, vectors = np.linalg.eigh(centred.T @ centred)
    major = np.arctan2(vectors[1, 1], vectors[0, 1])
    first: IntArray | None = None
    # Cutting across the long axis keeps both parts compact; turning the cut and
    # starting from the other end are fallbacks for when the rest would fall apart.
    for turn in CUT_TURNS:
        angle = major + turn
        key = centred @ np.array([np.cos(angle), np.sin(angle)])
        for sign in (1.0, -1.0):
            region = _grow(members, sign * key, n, neighbours)
            if first is None:
                first = region
            if is_connected(np.setdiff1d(members, region), neighbours):
                return region
    assert first is not None
    return first


def _grow(members: IntArray, key: FloatArray, n: int, neighbours: list[list[int]]) -> IntArray:
    """Grow a connected region of `n` cells from the lowest `key`, always taking the lowest."""
    # Equals a plain cut along `key` whenever that cut is connected, and stays
    # connected when it is not.
    key_of = dict(zip(members.tolist(), key.tolist(), strict=True))
    queued: set[int] = set()
    heap: list[tuple[float, int]] = []
    region: list[int] = []
    while len(region) < n:
        if not heap:  # a disconnected remainder: restart from its lowest cell
            start = min((k, c) for c, k in key_of.items() if c not in queued)
            heap.append(start)
            queued.add(start[1])
        _, cell = heapq.heappop(heap)
        region.append(cell)
        for other in neighbours[cell]:
            if other in key_of and other not in queued:
                queued.add(other)
                heapq.heappush(heap, (key_of[other], other))
    return np.array(sorted(region), dtype=np.intp)


def is_connected(cells: IntArray, neighbours: list[list[int]]) -> bool:
    """Whether the cells form one edge-connected group."""
    if len(cells) == 0:
        return True
    inside = set(cells.tolist())
    seen = {int(cells[0])}
    stack = [int(cells[0])]
    while stack:
        for other in neighbours[stack.pop()]:
            if other in inside and other not in seen:
                seen.add(other)
                stack.append(other)
    return len(seen) == len(inside)
