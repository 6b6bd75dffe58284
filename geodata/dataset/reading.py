"""Reading boundary files: which layers a file holds, under the contract's names, in EPSG:4326.

GeoJSON, Shapefile (plain or zipped), GeoPackage and FlatGeobuf are read with pyogrio;
every problem is collected so the refusal names them all.
"""

import re
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
import pyogrio.errors

from geodata.dataset.layers import (
    COMMUNITY_COLUMNS,
    DISTRICT_COLUMNS,
    GRID_COLUMNS,
    LEVEL_BY_CODE_LENGTH,
    LEVEL_BY_LAYER,
    POI_COLUMNS,
    POIS_LAYER,
    STORAGE_CRS,
    STREET_COLUMNS,
    WORKER_COLUMNS,
    WORKERS_LAYER,
)
from geodata.dataset.rows import Problem, Reason
from geodata.dataset.validation import normalise_code
from geodata.errors import ImportRefused

Progress = Callable[[str, int, int], None]
STAGE_READ = "Reading layers"

SUFFIXES = {
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
    ".shp": "Shapefile",
    ".zip": "zipped Shapefile",
    ".gpkg": "GeoPackage",
    ".fgb": "FlatGeobuf",
}
_FILE = "file"
_ID_COLUMNS = {WORKERS_LAYER: "worker_id", POIS_LAYER: "poi_id"}
#: Every column of the layer contract; Shapefiles cut names to 10 characters.
_CONTRACT_COLUMNS = frozenset(
    DISTRICT_COLUMNS + STREET_COLUMNS + COMMUNITY_COLUMNS + GRID_COLUMNS
    + WORKER_COLUMNS + POI_COLUMNS
)  # fmt: skip


def read_boundary_file(
    path: Path, *, name: str | None = None, progress: Progress | None = None
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Every recognised layer of a file, in EPSG:4326, and the names of layers skipped.

    `name` is the file's name as its owner knows it (an upload's, default `path.name`):
    problems name the file by it, never by a path on this machine.
    """
    shown = name or path.name
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        known = ", ".join(sorted(SUFFIXES))
        detail = f"{suffix or 'no extension'} is not a supported format ({known})"
        raise refused(shown, [Problem(_FILE, shown, Reason.UNSUPPORTED_FORMAT, detail)])
    try:
        sources = _layer_sources(path)
        read: list[tuple[str, pd.DataFrame]] = []
        for done, (source, layer) in enumerate(sources, start=1):
            read.append((layer, pyogrio.read_dataframe(source, layer=layer)))
            if progress is not None:
                progress(STAGE_READ, done, len(sources))
    except _ReadErrors as exc:
        detail = f"not a readable {_format_of(suffix)}: {_scrubbed(str(exc), path, shown)}"
        problem = Problem(_FILE, shown, Reason.UNREADABLE_FILE, detail)
        raise refused(shown, [problem]) from exc
    if not sources:
        detail = (
            "the zip archive holds no .shp, .gpkg, .geojson or .fgb file"
            if suffix == ".zip"
            else f"no layer could be read from it: not a valid {_format_of(suffix)}"
        )
        raise refused(shown, [Problem(_FILE, shown, Reason.UNSUPPORTED_FORMAT, detail)])
    frames, skipped, problems = _recognise_layers(read)
    if not problems and all(frame.empty for frame in frames.values()):
        detail = "no recognised layer of the file has a feature"
        problems.append(Problem(_FILE, shown, Reason.EMPTY_FILE, detail))
    if problems:
        raise refused(shown, problems)
    return frames, skipped


_ReadErrors = (
    pyogrio.errors.DataSourceError,
    pyogrio.errors.DataLayerError,
    pyogrio.errors.FieldError,
    pyogrio.errors.GeometryError,
    pyogrio.errors.CRSError,
    zipfile.BadZipFile,
    OSError,
)

# GDAL's advice to its own command-line users, not to someone uploading a file.
_GDAL_HINT = re.compile(r";?\s*It might help to specify the correct driver.*$", re.DOTALL)


def _format_of(suffix: str) -> str:
    """The format a suffix promises, as a problem names it."""
    return "zip archive" if suffix == ".zip" else f"{SUFFIXES[suffix]} file"


def _scrubbed(message: str, path: Path, shown: str) -> str:
    """A reader's message with this machine's paths replaced by the file's own name."""
    resolved = str(path.resolve())
    # Longest first, so that the zip's GDAL path becomes `name/member`, not a half path.
    for server_side in (f"/vsizip/{resolved}", resolved, str(path.absolute()), str(path)):
        message = message.replace(server_side, shown)
    return _GDAL_HINT.sub("", message).strip()


def _layer_sources(path: Path) -> list[tuple[str, str]]:
    """(GDAL path, layer name) of every layer; a zip's members are read via /vsizip/."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.suffix.lower() != ".zip":
        return [(str(path), str(name)) for name, _ in pyogrio.list_layers(path)]
    with zipfile.ZipFile(path) as archive:
        members = [
            name
            for name in archive.namelist()
            if Path(name).suffix.lower() in SUFFIXES.keys() - {".zip"}
            and not name.startswith("__MACOSX/")
        ]
    sources = []
    for member in sorted(members):
        inner = f"/vsizip/{path.resolve()}/{member}"
        sources += [(inner, str(name)) for name, _ in pyogrio.list_layers(inner)]
    return sources


def _recognise_layers(
    read: Sequence[tuple[str, pd.DataFrame]],
) -> tuple[dict[str, pd.DataFrame], list[str], list[Problem]]:
    """Name each layer by the contract, bring geometries to EPSG:4326, merge same-kind layers."""
    by_kind: dict[str, list[pd.DataFrame]] = defaultdict(list)
    unknown: list[str] = []
    problems: list[Problem] = []
    for name, raw in read:
        frame = _canonical_columns(raw)
        kind = _identify(name, frame)
        if kind is None:
            unknown.append(name)
            continue
        if kind == WORKERS_LAYER and isinstance(frame, gpd.GeoDataFrame):
            frame = pd.DataFrame(frame.drop(columns=frame.geometry.name))
        elif kind != WORKERS_LAYER:
            frame, crs_problems = _to_storage_crs(kind, frame)
            problems += crs_problems
        by_kind[kind].append(frame)
    if not by_kind and any(not frame.empty for _, frame in read):
        problems += [
            Problem(
                _FILE,
                name,
                Reason.UNRECOGNISED_LAYER,
                "neither its name nor its columns say which layer it is "
                "(expected districts, streets, communities, grids, workers or pois, "
                "or a code column of 6, 9, 12 or 15 digits)",
            )
            for name in unknown
        ]
    frames = {
        kind: parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
        for kind, parts in by_kind.items()
    }
    return frames, unknown, problems


def _canonical_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Lower-case column names and undo the Shapefile's 10-character truncation."""
    renames: dict[str, str] = {}
    for column in frame.columns:
        if isinstance(frame, gpd.GeoDataFrame) and column == frame.geometry.name:
            continue
        lower = str(column).lower()
        full = [name for name in _CONTRACT_COLUMNS if len(lower) == 10 and name.startswith(lower)]
        truncated = len(full) == 1 and lower not in _CONTRACT_COLUMNS
        renames[str(column)] = full[0] if truncated else lower
    return frame.rename(columns=renames)


def _identify(name: str, frame: pd.DataFrame) -> str | None:
    """The contract layer a file layer holds: by its name, else by its code width or id column."""
    key = name.lower()
    if key in LEVEL_BY_LAYER or key in (WORKERS_LAYER, POIS_LAYER):
        return key
    if "code" in frame.columns:
        widths = Counter(len(code) for code in map(normalise_code, frame["code"]) if code)
        if widths:
            level = LEVEL_BY_CODE_LENGTH.get(widths.most_common(1)[0][0])
            return level.layer if level is not None else None
    for kind, id_column in _ID_COLUMNS.items():
        if id_column in frame.columns:
            return kind
    return None


def _to_storage_crs(kind: str, frame: pd.DataFrame) -> tuple[pd.DataFrame, list[Problem]]:
    """Transform a layer to EPSG:4326; refuse no CRS, an unusable CRS, out-of-range coordinates."""
    if not isinstance(frame, gpd.GeoDataFrame):
        return frame, [Problem(kind, None, Reason.MISSING_COLUMN, "the layer has no geometry")]
    if frame.empty:
        return frame, []
    crs = frame.crs
    if crs is None:
        detail = "the layer has no coordinate reference system (add a .prj or an SRS)"
        return frame, [Problem(kind, None, Reason.MISSING_CRS, detail)]
    if crs.equals(STORAGE_CRS, ignore_axis_order=True):
        frame = frame.set_crs(STORAGE_CRS, allow_override=True)
    elif crs.is_geographic or crs.is_projected:
        try:
            frame = frame.to_crs(STORAGE_CRS)
        except Exception as exc:  # pyproj raises several types; all mean "cannot transform"
            detail = f"cannot transform {crs.name} to {STORAGE_CRS}: {exc}"
            return frame, [Problem(kind, None, Reason.UNSUPPORTED_CRS, detail)]
    else:
        detail = f"{crs.name} is neither geographic nor projected"
        return frame, [Problem(kind, None, Reason.UNSUPPORTED_CRS, detail)]
    lon_min, lat_min, lon_max, lat_max = frame.total_bounds
    if not (-180 <= lon_min <= lon_max <= 180 and -90 <= lat_min <= lat_max <= 90):
        detail = f"coordinates fall outside longitude/latitude ranges: is {crs.name} right?"
        return frame, [Problem(kind, None, Reason.WRONG_CRS, detail)]
    return frame, []


def refused(name: str, problems: Sequence[Problem]) -> ImportRefused:
    """The refusal of the file named `name` (as its owner knows it), naming every problem."""
    return ImportRefused(_refusal_message(name, problems), list(problems))


def _refusal_message(name: str, problems: Sequence[Problem]) -> str:
    lines = [f"{name} refused, nothing was imported: {len(problems)} problem(s)"]
    lines += [f"  {problem}" for problem in problems]
    return "\n".join(lines)
