"""`wangge bench`: run the benchmarks, each in its own process, then one table of them all.

Each benchmark module runs as `python -m MODULE [--quick arguments] --json FILE`, so that
its threads, clients and metrics never leak into the next, prints its own table as it
ends, and writes its rows (`wangge.benchmarks.rows`) for the combined table here.
"""

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from wangge.benchmarks.rows import BenchmarkRow, read_rows

#: What `--output` can write, by the file's suffix.
OUTPUT_SUFFIXES = (".json", ".md")


@dataclass(frozen=True)
class Benchmark:
    """A benchmark module and the arguments that make its `--quick` run."""

    module: str
    #: Scaled down so the quick suite measures for about a minute in all: noisy figures.
    quick: tuple[str, ...] = ()


BENCHMARKS: dict[str, Benchmark] = {
    "pipeline": Benchmark(
        "wangge.benchmarks.pipeline",
        # Fewer events than this and the drain is over before a steady rate is seen.
        ("--events", "20000", "--processes", "1", "--latency-seconds", "3"),
    ),
    "compliance": Benchmark(
        "wangge.benchmarks.compliance", ("--workers", "40", "--latency-seconds", "3")
    ),
    "api": Benchmark("wangge.benchmarks.api", ("--duration", "1")),
    "import": Benchmark("wangge.benchmarks.importer", ("--runs", "2")),
    # The workers' app's first load in chromium on a throttled phone (Fast 3G, 4x CPU).
    "app": Benchmark("wangge.benchmarks.app_load", ("--runs", "1")),
    # The supervisors' /map to the city's grids, signed in by password (desktop, Fast 3G).
    "map": Benchmark("wangge.benchmarks.map_load", ("--runs", "1")),
    # OsmAnd fixes through the gateway beside JSON check-ins, in alternating rounds.
    "trackers": Benchmark("wangge.benchmarks.trackers", ("--duration", "2", "--rounds", "1")),
    # Beside tipg (installed on first use into an environment of its own) and a bare route.
    "peers": Benchmark("wangge.benchmarks.peers", ("--duration", "1", "--rounds", "1")),
    # Open cases queued (100,000; quick: 20,000), due moments one a second, each timed to Kafka.
    "deadlines": Benchmark("wangge.benchmarks.deadlines", ("--cases", "20000", "--probes", "20")),
    # A month of cases (9,300), the city's evaluation to 16 clients beside the bare route.
    "evaluation": Benchmark("wangge.benchmarks.evaluation", ("--duration", "2")),
    # One worker's week of fixes (about 500) to 16 clients beside the bare route.
    "track": Benchmark("wangge.benchmarks.track", ("--duration", "2")),
    # Every worker's week walked (quick: 400 of them), the city's coverage to 16 clients.
    "coverage": Benchmark("wangge.benchmarks.coverage", ("--duration", "2", "--workers", "400")),
    # A year of history loaded in SQL (quick: 3 weeks at 2%), week 52's measures vs week 1's.
    "history": Benchmark(
        "wangge.benchmarks.history",
        ("--weeks", "3", "--scale", "0.02", "--events", "2000", "--latency-seconds", "2"),
    ),
}


@dataclass(frozen=True)
class BenchmarkRun:
    """What one benchmark process reported, or how it failed."""

    name: str
    rows: list[BenchmarkRow]
    exit_code: int
    seconds: float

    @property
    def failed(self) -> bool:
        """True when the process failed or reported nothing."""
        return self.exit_code != 0 or not self.rows


def check_request(names: Sequence[str], output: Path | None) -> list[str]:
    """The benchmarks to run (all when none is named); ValueError before anything runs."""
    unknown = sorted(set(names) - BENCHMARKS.keys())
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; choose from {sorted(BENCHMARKS)}")
    if output is not None and output.suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"--output writes {' or '.join(OUTPUT_SUFFIXES)}, not {output.name!r}")
    return list(names) or list(BENCHMARKS)


def run_benchmark(name: str, *, quick: bool) -> BenchmarkRun:
    """Run one benchmark module in its own process and read the rows it wrote."""
    benchmark = BENCHMARKS[name]
    with tempfile.TemporaryDirectory(prefix="wangge-bench-") as folder:
        rows_file = Path(folder) / f"{name}.json"
        command = [sys.executable, "-m", benchmark.module, *(benchmark.quick if quick else ())]
        started = time.monotonic()
        done = subprocess.run([*command, "--json", str(rows_file)], check=False)
        seconds = time.monotonic() - started
        rows = read_rows(rows_file) if done.returncode == 0 and rows_file.exists() else []
    return BenchmarkRun(name, rows, done.returncode, seconds)


def run_benchmarks(
    names: Sequence[str],
    *,
    quick: bool,
    console: Console,
    database_url: str,
    output: Path | None = None,
) -> int:
    """Run the named benchmarks (all when empty), print one table; return how many failed."""
    from wangge.benchmarks.harness import describe_machine

    chosen = check_request(names, output)
    runs = []
    for name in chosen:
        console.rule(f"wangge bench {name}" + (" --quick" if quick else ""))
        runs.append(run_benchmark(name, quick=quick))
    machine = describe_machine(database_url)
    console.rule("wangge bench: all benchmarks")
    console.print(combined_table(runs, quick=quick))
    for key, value in machine.items():
        console.print(f"{key}: {value}")
    if output is not None:
        output.write_text(render_report(runs, machine, quick=quick, suffix=output.suffix))
        console.print(f"wrote {output}")
    return sum(run.failed for run in runs)


# --------------------------------------------------------------------------- the table


COLUMNS = ("benchmark", "measure", "ours", "ceiling / peer", "ratio", "target", "met")


def _figure(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    digits = 0 if abs(value) >= 100 or float(value).is_integer() else 1 if abs(value) >= 10 else 2
    return f"{value:,.{digits}f} {unit}"


def _cells(run: BenchmarkRun) -> list[list[str]]:
    """The table's cells for one run's rows; one row saying so if it failed."""
    if run.failed:
        how = f"exit {run.exit_code}" if run.exit_code else "no rows written"
        return [[run.name, f"FAILED ({how})", "—", "—", "—", "—", "NO"]]
    cells = []
    for row in run.rows:
        peer = _figure(row.peer, row.unit)
        cells.append(
            [
                run.name,
                row.name,
                _figure(row.ours, row.unit),
                f"{peer} ({row.peer_name})" if row.peer is not None else "—",
                f"{row.ratio:.2f}" if row.ratio is not None else "—",
                row.target,
                {True: "yes", False: "NO", None: "—"}[row.met],
            ]
        )
    return cells


def _title(runs: Sequence[BenchmarkRun], *, quick: bool) -> str:
    took = ", ".join(f"{run.name} {run.seconds:,.0f} s" for run in runs)
    kind = "--quick (short runs: noisy figures)" if quick else "full runs"
    return f"wangge bench, {kind}; {took}"


def combined_table(runs: Sequence[BenchmarkRun], *, quick: bool) -> Table:
    """Every benchmark's rows in one rich table."""
    table = Table(title=_title(runs, quick=quick))
    for column in COLUMNS:
        table.add_column(column, justify="right" if column in ("ours", "ratio") else "left")
    for run in runs:
        for cells in _cells(run):
            table.add_row(*cells)
    return table


def render_report(
    runs: Sequence[BenchmarkRun], machine: dict[str, str], *, quick: bool, suffix: str
) -> str:
    """The combined results as JSON or Markdown (with each row's detail), for the docs."""
    if suffix == ".json":
        document = {
            "quick": quick,
            "machine": machine,
            "benchmarks": [
                {
                    "name": run.name,
                    "exit_code": run.exit_code,
                    "seconds": run.seconds,
                    "rows": [asdict(row) for row in run.rows],
                }
                for run in runs
            ],
        }
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    lines = [f"**{_title(runs, quick=quick)}**", ""]
    lines += ["| " + " | ".join((*COLUMNS, "detail")) + " |", "|" + "---|" * (len(COLUMNS) + 1)]
    for run in runs:
        details = [row.detail for row in run.rows] if not run.failed else [""]
        for cells, detail in zip(_cells(run), details, strict=True):
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in (*cells, detail)) + " |")
    lines += ["", *(f"- {key}: {value}" for key, value in machine.items())]
    return "\n".join(lines) + "\n"
