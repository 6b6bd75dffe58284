"""A simulated week through the real broker, consumers and PostGIS: `wangge verify` agrees.

The simulator produces with every delivery fault on (late batches, retries, skewed
clocks, GCJ-02 phones, poor fixes, teleports, malformed messages); `wangge consume` runs
as a separate process, as in production; `wangge verify` then compares the database
with the truth file. CI runs 60 workers; `WANGGE_SIMULATION_FULL=1` runs the whole city
and prints the figures (docs/SIMULATION.md).
"""

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from kafka import KafkaConsumer, TopicPartition

from geodata.compliance import ComplianceConfig, IsoWeek
from geodata.contract import Topics
from geodata.db.engine import create_db_engine
from tests.integration.pipeline_support import (
    ConsumerProcess,
    count_rows,
    read_topic,
    running,
    wait_until,
)
from wangge import services
from wangge.simulation import Truth, compare
from wangge.simulation.db import read_platform

pytestmark = pytest.mark.integration

WEEK = "2020-W37"
WEEK_END = IsoWeek.parse(WEEK).end(ComplianceConfig().tz)
SEED = 37
WORKERS = 60
WANGGE = [sys.executable, "-m", "wangge"]


def _env(database_url: str, bootstrap: str, topics: Topics) -> dict[str, str]:
    return {
        **os.environ,
        "WANGGE_DATABASE_URL": database_url,
        "WANGGE_KAFKA_BOOTSTRAP": bootstrap,
        "WANGGE_TOPIC_NAMESPACE": topics.checkins.removesuffix(Topics().checkins),
        "COLUMNS": "200",
    }


def _wangge(
    args: list[str], env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*WANGGE, *args], env=env, capture_output=True, text=True, check=False, timeout=timeout
    )


def _simulate(env: dict[str, str], truth: Path, workers: int | None, timeout: float) -> str:
    args = [
        "simulate",
        "--week",
        WEEK,
        "--seed",
        str(SEED),
        "--speed",
        "max",
        "--truth",
        str(truth),
    ]
    if workers is not None:
        args += ["--workers", str(workers)]
    done = _wangge(args, env, timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _folded(url: str, expected_checkins: int) -> bool:
    """The week ended for the engine, its statuses published, every distinct check-in in."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT watermark FROM compliance_clock WHERE name = 'engine'),"
            " (SELECT count(*) FROM compliance_changes WHERE published_at IS NULL)"
        ).fetchone()
        assert row is not None
        watermark, unpublished = row
        if watermark is None or watermark < WEEK_END or unpublished:
            return False
        # Counted last: a million rows are not scanned every poll while the week streams in.
        stored = conn.execute("SELECT count(*) FROM patrol_checkins").fetchone()
    return stored is not None and stored[0] == expected_checkins


@dataclass
class City:
    """A fresh reference city and topics, its `wangge consume` (not started yet), and
    where the simulator writes its truth."""

    url: str
    topics: Topics
    env: dict[str, str]
    consumer: ConsumerProcess
    truth_path: Path


@pytest.fixture
def city(
    reference_database_factory: Callable[[], str],
    topic_factory: Callable[..., Topics],
    kafka_bootstrap: str,
    tmp_path: Path,
) -> City:
    """The city a simulated week is produced into and consumed by."""
    url, topics = reference_database_factory(), topic_factory()
    group = f"sim-{uuid.uuid4().hex[:6]}"
    return City(
        url,
        topics,
        _env(url, kafka_bootstrap, topics),
        ConsumerProcess(url, kafka_bootstrap, topics, group, tmp_path),
        tmp_path / "truth.json",
    )


def test_a_simulated_week_with_delivery_faults_verifies_without_disagreement(
    city: City, kafka_bootstrap: str, tmp_path: Path
) -> None:
    with running(city.consumer):
        _simulate(city.env, city.truth_path, WORKERS, timeout=300)
        counts = json.loads(city.truth_path.read_text())["counts"]
        # The faults are really on in this run, not only configured.
        for fault in (
            "duplicate_deliveries",
            "late_walks",
            "poor_accuracy_fixes",
            "teleports",
            "phones_gcj02",
            "phones_skewed_clock",
            "malformed",
            "incidents",
        ):
            assert counts[fault] > 0, fault
        assert counts["profile_lazy"] > 0
        wait_until(
            lambda: _folded(city.url, counts["checkins"]) or not city.consumer.alive(),
            timeout=400,
            message="the consumer folding the simulated week in",
        )
        assert city.consumer.alive(), city.consumer.log()[-3000:]
    verify = _wangge(
        ["verify", "--truth", str(city.truth_path), "--week", WEEK], city.env, timeout=120
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "engine statuses compared: 0 disagreements" in verify.stdout
    assert count_rows(city.url, "SELECT count(*) FROM incidents") == counts["incidents"]
    assert len(read_topic(kafka_bootstrap, city.topics.deadletter)) == counts["malformed"]

    # And a truth the platform does not match is reported, with its reason, exit 1.
    body = json.loads(city.truth_path.read_text())
    met = next(e for e in body["entries"] if e["status"] == "met")
    met["status"], met["counted"] = "missed", met["counted"] - 1
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(body))
    verify = _wangge(["verify", "--truth", str(wrong), "--week", WEEK], city.env, timeout=120)
    assert verify.returncode == 1
    assert met["worker_id"] in verify.stdout
    assert "counted patrols differ" in verify.stdout


# --------------------------------------------------------------------------- full city


def _first_produced_at(bootstrap: str, topics: Topics) -> float:
    """The broker timestamp (the producer's send time) of the earliest record, epoch s."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [
            TopicPartition(topic, p)
            for topic in (topics.checkins, topics.incidents)
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        first: dict[TopicPartition, int] = {}
        deadline = time.monotonic() + 60
        while len(first) < len(tps) and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500, max_records=10).items():
                first.setdefault(tp, records[0].timestamp)
                consumer.pause(tp)
        return min(first.values()) / 1000
    finally:
        consumer.close()


def _agrees(url: str, truth: Truth) -> bool:
    engine = create_db_engine(url)
    try:
        return compare(truth, read_platform(engine, truth)).agrees
    finally:
        engine.dispose()


@pytest.mark.skipif(
    os.environ.get("WANGGE_SIMULATION_FULL") != "1",
    reason="the whole city's week takes many minutes: set WANGGE_SIMULATION_FULL=1",
)
@pytest.mark.timeout(4 * 3600)
def test_the_whole_city_for_a_week_verifies_and_how_long_it_takes(
    city: City,
    reference_database_factory: Callable[[], str],
    topic_factory: Callable[..., Topics],
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    # The same events twice: first with nothing consuming (the pure produce time), then
    # into a fresh database with the consumers running, timed until all agree with the truth.
    bare = topic_factory()
    try:
        stdout = _simulate(
            _env(reference_database_factory(), kafka_bootstrap, bare),
            tmp_path / "bare.json",
            None,
            3600,
        )
    finally:
        services.delete_topics(kafka_bootstrap, bare)
    match = re.search(r"produced ([\d,]+) of [\d,]+ messages in ([\d,.]+) s", stdout)
    assert match is not None, stdout
    produced, produce_s = int(match[1].replace(",", "")), float(match[2].replace(",", ""))

    try:
        with running(city.consumer):
            time.sleep(5)  # joined the group, so the clock below measures work, not start-up
            _simulate(city.env, city.truth_path, None, 3600)
            truth = Truth.from_json(city.truth_path.read_text())
            first = _first_produced_at(kafka_bootstrap, city.topics)
            wait_until(
                lambda: (
                    (_folded(city.url, truth.counts["checkins"]) and _agrees(city.url, truth))
                    or not city.consumer.alive()
                ),
                timeout=3 * 3600,
                every=2.0,
                message="the consumer folding the city's week in",
            )
            done = time.time()
            assert city.consumer.alive(), city.consumer.log()[-3000:]
        verify = _wangge(
            ["verify", "--truth", str(city.truth_path), "--week", WEEK], city.env, timeout=600
        )
    finally:
        services.delete_topics(kafka_bootstrap, city.topics)
    assert verify.returncode == 0, verify.stdout[-5000:]
    end_to_end = done - first
    figures = {
        "messages produced": produced,
        "distinct check-ins": truth.counts["checkins"],
        "workers": truth.counts["workers"],
        "pure produce time (s)": round(produce_s, 1),
        "first event produced → every status final (s)": round(end_to_end, 1),
        "ratio": round(end_to_end / produce_s, 2),
        "verify": verify.stdout.strip().splitlines()[-1],
        "measured at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load average": os.getloadavg(),
    }
    print(json.dumps(figures, ensure_ascii=False, indent=1))
    print(verify.stdout)
