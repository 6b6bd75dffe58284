"""`wangge bench`: run the benchmarks, each in its own process, on the configured services."""

import subprocess
import sys
from collections.abc import Sequence

from rich.console import Console

#: name → (module, full-run arguments, one-minute `--quick` arguments)
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "pipeline": (
        "wangge.benchmarks.pipeline",
        [],
        ["--events", "20000", "--processes", "1", "--latency-seconds", "5"],
    ),
    "compliance": (
        "wangge.benchmarks.compliance",
        [],
        ["--workers", "100", "--latency-seconds", "5"],
    ),
    "api": ("wangge.benchmarks.api", [], ["--duration", "2"]),
    "locate": ("wangge.benchmarks.locate", [], []),
    "tiles": ("wangge.benchmarks.tiles", [], ["--rounds", "1"]),
}


def run_benchmarks(names: Sequence[str], *, quick: bool, console: Console) -> int:
    """Run the named benchmarks (all when empty); return how many failed."""
    unknown = sorted(set(names) - BENCHMARKS.keys())
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; choose from {sorted(BENCHMARKS)}")
    failed = 0
    for name in names or list(BENCHMARKS):
        module, full, short = BENCHMARKS[name]
        console.rule(f"wangge bench {name}" + (" --quick" if quick else ""))
        # A process each: a benchmark's threads, clients and metrics never leak into the next.
        done = subprocess.run([sys.executable, "-m", module, *(short if quick else full)])
        failed += done.returncode != 0
    return failed
