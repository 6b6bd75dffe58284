"""The one shape every benchmark reports in, and its JSON file for `wangge bench` to combine."""

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

#: The version of the `--json` file; `wangge bench` refuses a file of another.
FORMAT = 1


@dataclass(frozen=True)
class BenchmarkRow:
    """One line of the table: our figure, the ceiling or peer beside it, and the target."""

    name: str
    ours: float
    unit: str
    peer: float | None
    peer_name: str
    ratio: float | None
    target: str
    met: bool | None
    detail: str = ""
    #: Drain rows: distinct events sent, rows found, assignments republished.
    expected: int | None = None
    stored: int | None = None
    republished: int | None = None


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """The `--json FILE` option every benchmark module takes."""
    parser.add_argument(
        "--json", type=Path, metavar="FILE", help="also write the rows here, for `wangge bench`"
    )


def write_rows(path: Path, benchmark: str, rows: Sequence[BenchmarkRow]) -> None:
    """Write a benchmark's rows as JSON."""
    document = {"format": FORMAT, "benchmark": benchmark, "rows": [asdict(r) for r in rows]}
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")


def rows_from_json(document: dict[str, Any]) -> list[BenchmarkRow]:
    """The rows of a `write_rows` document; ValueError if it is not one."""
    if document.get("format") != FORMAT:
        raise ValueError(f"not a benchmark rows document of format {FORMAT}")
    names = {f.name for f in fields(BenchmarkRow)}
    rows: list[dict[str, Any]] = document["rows"]
    return [BenchmarkRow(**_floats({k: v for k, v in row.items() if k in names})) for row in rows]


def _floats(row: dict[str, Any]) -> dict[str, Any]:
    """JSON writes a whole float as an int (a count of rows); the row's figures are floats."""
    for key in ("ours", "peer", "ratio"):
        if row.get(key) is not None:
            row[key] = float(row[key])
    return row


def read_rows(path: Path) -> list[BenchmarkRow]:
    """Read the rows a benchmark wrote with `write_rows`."""
    return rows_from_json(json.loads(path.read_text(encoding="utf-8")))
