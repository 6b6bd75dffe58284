"""A city-wide read of the real app to closed-loop clients, beside the bare route in one run.

What the evaluation and coverage benchmarks share once their data is seeded: an admin's
token, the real app and the ceiling (a bare FastAPI route) each under uvicorn, each
path's first answer after the start timed on its own, then the ceiling and each path
under the same closed-loop load, every path judged by its p99.
"""

import json
import os
import tempfile
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from wangge.benchmarks.api import ApiRow, _Bench, render_table
from wangge.benchmarks.rows import BenchmarkRow, write_rows
from wangge.benchmarks.servers import API_FACTORY, CEILING_FACTORY, serve


def first_answer_ms(port: int, path: str, token: str) -> float:
    """One request's time, answered in full (a kept answer is not yet there to send)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"}
    )
    began = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        json.loads(response.read())
    return (time.perf_counter() - began) * 1000


def load_city_reads(
    url: str,
    paths: dict[str, str],
    duration_s: float,
    connections: int,
    target_p99_ms: float,
    console: Console,
) -> tuple[list[ApiRow], dict[str, float]]:
    """Serve the app on `url` and the ceiling, load both; the judged rows and first answers."""
    from wangge.users_cli import add_user

    token = add_user(url, "bench-admin", "admin", None, None)
    env = {**os.environ, "WANGGE_DATABASE_URL": url, "WANGGE_KAFKA_BOOTSTRAP": "127.0.0.1:9"}
    with (
        tempfile.TemporaryDirectory(prefix="wangge-bench-reads-") as folder,
        serve(CEILING_FACTORY, env) as ceiling_port,
        serve(API_FACTORY, env) as api_port,
    ):
        first = {name: first_answer_ms(api_port, path, token) for name, path in paths.items()}
        targets = {
            name: [{"path": path, "headers": {"Authorization": f"Bearer {token}"}}]
            for name, path in paths.items()
        }
        bench = _Bench(
            ceiling_port,
            api_port,
            duration_s,
            Path(folder),
            lambda stage, _done, _total: console.print(f"… {stage}"),
        )
        rows = bench._rows(
            targets,  # type: ignore[arg-type]
            ["--closed", str(connections)],
            f"closed, {connections} connections",
        )
    target = f"p99 ≤ {target_p99_ms:g} ms"
    judged = [
        row
        if row.result is row.ceiling
        else replace(row, target=target, met=row.result.p99_ms <= target_p99_ms)
        for row in rows
    ]
    return judged, first


def as_benchmark_rows(rows: list[ApiRow], first: dict[str, float]) -> list[BenchmarkRow]:
    """The rows in the shape every benchmark shares: p99 beside the ceiling's."""
    return [
        BenchmarkRow(
            f"{row.endpoint}, {row.load}",
            row.result.p99_ms,
            "ms p99",
            row.ceiling.p99_ms,
            "ceiling",
            row.p99_ratio,
            row.target,
            row.met,
            f"{row.result.rate:,.0f} requests/s; p50 {row.result.p50_ms:.2f} ms; first answer"
            f" (computed, not kept) {first[row.endpoint]:.0f} ms",
        )
        for row in rows
        if row.result is not row.ceiling
    ]


def report_city_reads(
    console: Console,
    benchmark: str,
    rows: list[ApiRow],
    first: dict[str, float],
    machine: dict[str, str],
    json_path: Path | None,
) -> None:
    """Print the table, the first answers, the machine and its load; write the rows."""
    console.print(render_table(rows))
    for name, ms in first.items():
        console.print(f"{name}: first answer (computed, not kept) {ms:.0f} ms")
    for name, value in machine.items():
        console.print(f"{name}: {value}")
    console.print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if json_path:
        write_rows(json_path, benchmark, as_benchmark_rows(rows, first))
