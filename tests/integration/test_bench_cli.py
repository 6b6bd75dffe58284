"""`wangge bench --quick` as a user runs it: real benchmark processes, one combined table."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.timeout(300)
def test_bench_quick_prints_one_table_of_the_import_and_api_runs_and_writes_it(
    postgis_server: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "WANGGE_DATABASE_URL": f"{postgis_server}/postgres",
        "WANGGE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "WANGGE_STATE_DIR": str(tmp_path / "state"),
        "COLUMNS": "250",
    }
    output = tmp_path / "results.json"
    command = ["bench", "import", "api", "--quick", "--output", str(output)]
    done = subprocess.run(
        [sys.executable, "-m", "wangge", *command], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    report = json.loads(output.read_text())
    assert report["quick"] is True
    assert [b["name"] for b in report["benchmarks"]] == ["import", "api"]
    imported, api = (b["rows"] for b in report["benchmarks"])
    assert {row["peer_name"] for row in imported} == {"ogr2ogr -f PostgreSQL", "ogr2ogr -overwrite"}
    assert {row["peer_name"] for row in api} == {"ceiling: bare async FastAPI route"}
    for row in imported + api:
        assert row["ours"] > 0
        assert row["peer"] > 0
        assert row["ratio"] > 0

    # The combined table comes after every module's own, and holds both benchmarks' rows.
    combined = done.stdout.split("wangge bench: all benchmarks", 1)[1]
    for row in imported + api:
        assert row["name"][:40] in combined
    lines = combined.splitlines()
    assert any(line.startswith("│ import ") and "ogr2ogr -f PostgreSQL" in line for line in lines)
    assert any(line.startswith("│ api ") and "GET /api/v1/grids/locate" in line for line in lines)
