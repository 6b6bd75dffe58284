"""`wangge bench`: names are checked before anything runs; the rows make one table."""

import importlib
import json
import tomllib
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
from rich.console import Console

from wangge.benchmarks.cli import (
    BENCHMARKS,
    BenchmarkRun,
    check_request,
    combined_table,
    render_report,
    run_benchmarks,
)
from wangge.benchmarks.rows import BenchmarkRow, read_rows, write_rows

IMPORT_ROW = BenchmarkRow(
    "import into a fresh database", 605.2, "ms", 283.0, "ogr2ogr -f PostgreSQL", 2.14,
    "≤ 5 × ogr2ogr", True, "median of 2 runs",
)  # fmt: skip
LATENCY_ROW = BenchmarkRow(
    "latency p99", 1234.5, "ms", None, "", None, "p99 ≤ 500 ms", False, "a | pipe in it"
)
RUNS = [
    BenchmarkRun("import", [IMPORT_ROW], 0, 11.6),
    BenchmarkRun("pipeline", [LATENCY_ROW], 0, 40.2),
    BenchmarkRun("api", [], 1, 3.0),
]


def _text(table: object) -> str:
    console = Console(record=True, width=300)
    console.print(table)
    return console.export_text()


def test_an_unknown_benchmark_is_refused_before_any_runs() -> None:
    with pytest.raises(ValueError, match="nosuch"):
        run_benchmarks(["pipeline", "nosuch"], quick=True, console=Console(), database_url="")


def test_an_output_file_of_another_kind_is_refused_before_any_runs() -> None:
    with pytest.raises(ValueError, match=r"results\.csv"):
        check_request([], Path("results.csv"))


def test_no_name_means_every_benchmark_import_included() -> None:
    chosen = check_request([], None)
    assert chosen == list(BENCHMARKS)
    assert chosen[:4] == ["pipeline", "compliance", "api", "import"]


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_benchmark_module_has_a_main(name: str) -> None:
    module = importlib.import_module(BENCHMARKS[name].module)
    assert callable(module.main)


def test_rows_written_by_a_module_read_back_the_same(tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    write_rows(path, "import", [IMPORT_ROW, LATENCY_ROW])
    assert read_rows(path) == [IMPORT_ROW, LATENCY_ROW]


def test_whole_figures_written_as_json_integers_read_back_as_floats(tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    path.write_text(json.dumps({"format": 1, "benchmark": "compliance", "rows": [
        {"name": "statuses", "ours": 40, "unit": "workers", "peer": 40, "peer_name": "sampled",
         "ratio": 1, "target": "all", "met": True},
    ]}))  # fmt: skip
    (row,) = read_rows(path)
    assert (row.ours, row.peer, row.ratio) == (40.0, 40.0, 1.0)
    assert isinstance(row.ours, float)
    text = _text(combined_table([BenchmarkRun("compliance", [row], 0, 1.0)], quick=False))
    assert "40 workers" in text


def test_one_table_holds_every_benchmarks_rows_and_a_failed_one_says_so() -> None:
    text = _text(combined_table(RUNS, quick=True))
    lines = text.splitlines()
    imported = next(line for line in lines if "import into a fresh database" in line)
    for cell in ("import", "605 ms", "283 ms (ogr2ogr -f PostgreSQL)", "2.14", "≤ 5 × ogr2ogr"):
        assert cell in imported
    assert imported.rstrip(" │").endswith("yes")
    latency = next(line for line in lines if "latency p99" in line)
    assert "pipeline" in latency
    assert "1,234 ms" in latency
    assert latency.rstrip(" │").endswith("NO")
    assert any("api" in line and "FAILED (exit 1)" in line for line in lines)
    assert "--quick" in text


def test_the_report_file_keeps_every_row_with_its_detail_as_json_or_markdown() -> None:
    machine = {"cpus": "2 × test"}
    document = json.loads(render_report(RUNS, machine, quick=False, suffix=".json"))
    assert [b["name"] for b in document["benchmarks"]] == ["import", "pipeline", "api"]
    assert document["benchmarks"][0]["rows"][0]["peer_name"] == "ogr2ogr -f PostgreSQL"
    assert document["machine"] == machine

    markdown = render_report(RUNS, machine, quick=False, suffix=".md").splitlines()
    table = [line for line in markdown if line.startswith("| ")]
    assert len(table) == 1 + 3  # the header, two rows, the failed benchmark
    assert "median of 2 runs" in table[1]
    assert "a \\| pipe in it" in table[2]
    assert "- cpus: 2 × test" in markdown


def test_the_wheel_ships_the_simulator_but_not_the_benchmarks() -> None:
    root = Path(__file__).resolve().parents[2]
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    find = pyproject["tool"]["setuptools"]["packages"]["find"]

    def shipped(package: str) -> bool:
        # setuptools' own rule: fnmatch on the dotted name, in `include` and not in `exclude`.
        def matches(key: str) -> bool:
            return any(fnmatchcase(package, pattern) for pattern in find.get(key, ()))

        return matches("include") and not matches("exclude")

    assert shipped("wangge")
    assert shipped("wangge.simulation")
    assert not shipped("wangge.benchmarks")
