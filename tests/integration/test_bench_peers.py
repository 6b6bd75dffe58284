"""`wangge bench peers` runs for real, briefly: tipg from its own environment, wangge, the
bare route, every read on both sides, and ratios computed from what was measured.

The peer environment is made on first use with pip from the package index: without a
route to it the test fails with pip's message (`PeerInstallError`), it is not skipped.
No figure is judged here: a half-second round on a shared machine says nothing.
"""

import pytest
from rich.console import Console

from wangge.benchmarks.cli import check_request
from wangge.benchmarks.loadgen import LoadResult
from wangge.benchmarks.peer_reads import BARE, RENDERING, TIPG, WANGGE
from wangge.benchmarks.peer_results import as_benchmark_rows, render_table
from wangge.benchmarks.peers import run_peers_benchmark
from wangge.settings import DatabaseSettings

pytestmark = pytest.mark.integration

READS = [
    ("OGC items, 100 grids", WANGGE, TIPG),
    ("OGC items, bbox of one community", WANGGE, TIPG),
    ("OGC one feature by id", WANGGE, TIPG),
    ("tiles z12, drawn each time", RENDERING, TIPG),
    ("tiles z14, drawn each time", RENDERING, TIPG),
    ("tiles z12, cache hits", WANGGE, BARE),
    ("tiles z12, 304 revalidations", WANGGE, BARE),
    ("tiles z14, cache hits", WANGGE, BARE),
    ("tiles z14, 304 revalidations", WANGGE, BARE),
    ("nearest", WANGGE, BARE),
    ("compliance, whole city, open week", WANGGE, BARE),
]


def _rate(rounds: list[LoadResult]) -> float:
    return sum(r.requests for r in rounds) / sum(r.seconds for r in rounds)


@pytest.mark.timeout(600)
def test_peers_benchmark_loads_every_read_on_wangge_and_its_peer_and_reports_measured_ratios(
    postgis_server: str, reference_database_url: str, kafka_bootstrap: str
) -> None:
    assert check_request(["peers"], None) == ["peers"]  # `wangge bench peers` knows it
    stages: list[str] = []

    result = run_peers_benchmark(
        f"{postgis_server}/postgres",
        kafka_bootstrap,
        duration_s=0.5,
        rounds=1,
        reference_database_url=reference_database_url,
        progress=lambda stage, _done, _total: stages.append(stage),
    )

    assert result.peer.tipg.startswith("1.")
    assert len(result.rows) == len(READS)
    for row, (name, ours, peer) in zip(result.rows, READS, strict=True):
        assert row.read.name.startswith(name)
        assert (row.ours.server, row.peer.server) == (ours, peer)
    for row in result.rows:
        assert len(row.ours.rounds) == len(row.peer.rounds) == 1
        expected = "304" if "304" in row.read.name else "200"
        assert all(set(r.statuses) == {expected} and r.requests for r in row.ours.rounds)
        assert all(set(r.statuses) == {"200"} and r.requests for r in row.peer.rounds)
        # The ratios are the measured rates' and p99s', nothing else.
        assert row.ours.rate == pytest.approx(_rate(row.ours.rounds))
        assert row.peer.rate == pytest.approx(_rate(row.peer.rounds))
        assert row.ratio == pytest.approx(row.ours.rate / row.peer.rate)
        assert row.p99_ratio == pytest.approx(row.ours.rounds[0].p99_ms / row.peer.rounds[0].p99_ms)
        assert row.ours.answer_bytes > 0 or expected == "304"
    assert result.sessions.pool_size == DatabaseSettings().db_pool_size
    assert 0 <= result.sessions.wangge_under_load <= result.sessions.wangge
    assert result.sessions.wangge > 0
    assert result.sessions.tipg > 0
    assert stages[0].startswith("Installing tipg")
    assert stages[-1] == "Measured"

    # The table a user reads: every read with both servers' figures and its ratio.
    console = Console(record=True, width=300)
    console.print(render_table(result))
    lines = console.export_text().splitlines()
    for row in result.rows:
        line = next(line for line in lines if line.startswith(f"│ {row.read.name[:30]}"))
        assert f"{row.ours.rate:,.0f}" in line
        assert f"{row.peer.rate:,.0f}" in line
        assert f"{row.ratio:.2f}" in line
        assert f"{row.p99_ratio:.2f}" in line
    assert any(line.startswith("│ new PostgreSQL sessions") for line in lines)

    # And the rows `wangge bench` combines: the same figures.
    shared = as_benchmark_rows(result)
    assert len(shared) == len(READS) + 1
    for row, rows_row in zip(result.rows, shared, strict=False):
        assert (rows_row.ours, rows_row.peer, rows_row.ratio) == (
            row.ours.rate,
            row.peer.rate,
            row.ratio,
        )
        assert rows_row.met is row.met
    assert shared[-1].ours == result.sessions.wangge
    assert shared[-1].peer == result.sessions.pool_size
