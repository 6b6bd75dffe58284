"""Crashes and rebalances: every event stored exactly once, the same as a clean run."""

import ast
import re
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from geodata.contract import Topics
from tests.integration.pipeline_support import (
    ConsumerProcess,
    checkin_event,
    checkin_message,
    count_rows,
    placements,
    produce,
    running,
    wait_until,
)

pytestmark = pytest.mark.integration

MEMBERS = 3
"""One member leaves mid-stream and the other two share its partitions: the rebalance a
two-member group goes through (to one owner), and a share among survivors besides."""

ASSIGNMENT_COLUMNS = (
    "SELECT event_id::text, grid_code, assignment_rule, staff_id, in_assigned_grid"
    " FROM checkins ORDER BY event_id"
)


def _checkins(database_url: str, per_grid: int) -> list[dict[str, object]]:
    spots = placements(database_url, per_grid=per_grid, seed=5)
    return [
        checkin_event(s.worker_id, s.lon, s.lat, minutes=(i * 7) % 10_000)
        for i, s in enumerate(spots)
    ]


def _produce_checkins(bootstrap: str, topic: str, database_url: str, per_grid: int) -> list[str]:
    events = _checkins(database_url, per_grid)
    produce(bootstrap, topic, (checkin_message(e) for e in events))
    return [str(e["event_id"]) for e in events]


def _assignments(database_url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(database_url) as conn:
        return [tuple(r) for r in conn.execute(ASSIGNMENT_COLUMNS).fetchall()]


def _assigned_partitions(process: ConsumerProcess, topic: str) -> list[list[int]]:
    """Each assignment the process logged, as the partitions of `topic` it got."""
    return [
        [p for t, p in ast.literal_eval(match) if t == topic]
        for match in re.findall(r"partitions assigned: (\[.*\])", process.log())
    ]


def test_consumer_killed_mid_batch_repeatedly_stores_each_event_once_like_a_clean_run(
    reference_database_factory: Callable[[], str],
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
    tmp_path: Path,
) -> None:
    topics = topic_factory()
    crashed_db = reference_database_factory()
    clean_db = reference_database_factory()
    event_ids = _produce_checkins(kafka_bootstrap, topics.checkins, crashed_db, per_grid=44)
    total = len(event_ids)
    assert total >= 50_000

    def consumer(database_url: str) -> ConsumerProcess:
        return ConsumerProcess(database_url, kafka_bootstrap, topics, crash_group, tmp_path)

    crash_group = f"crashy-{uuid.uuid4().hex[:8]}"
    clean = ConsumerProcess(
        clean_db, kafka_bootstrap, topics, f"clean-{uuid.uuid4().hex[:8]}", tmp_path
    )
    # The clean run, on its own database and group, goes on meanwhile: it shares nothing
    # with the crashed one, and fills the crashed one's restarts with work.
    with running(clean):
        kills = 0
        stored = 0
        while kills < 5:
            process = consumer(crashed_db).start()
            floor = stored

            def progressed(floor: int = floor) -> bool:
                return count_rows(crashed_db, "SELECT count(*) FROM checkins") > floor

            # Kill as soon as the consumer has committed something new: it is then almost
            # always in the middle of its next batch.
            wait_until(progressed, 120, "consumer made progress")
            process.kill()
            kills += 1
            stored = count_rows(crashed_db, "SELECT count(*) FROM checkins")
            if stored == total:
                break
        assert 0 < stored < total, "the crashes should happen mid-stream"

        with running(consumer(crashed_db)):
            wait_until(
                lambda: count_rows(crashed_db, "SELECT count(*) FROM checkins") == total,
                240,
                "the restarted consumer finished",
            )
        wait_until(
            lambda: count_rows(clean_db, "SELECT count(*) FROM checkins") == total,
            240,
            "the clean run finished",
        )

    crashed = _assignments(crashed_db)
    assert sorted(str(row[0]) for row in crashed) == sorted(event_ids)
    assert crashed == _assignments(clean_db)
    with psycopg.connect(crashed_db) as conn:
        offsets: dict[int, int] = dict(
            conn.execute(
                "SELECT partition, next_offset FROM consumer_offsets"
                " WHERE consumer_group = %s AND topic = %s",
                (crash_group, topics.checkins),
            ).fetchall()
        )
    assert sum(offsets.values()) == total


def test_group_members_share_partitions_and_a_rebalance_loses_and_repeats_nothing(
    reference_database_url: str,
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
    tmp_path: Path,
) -> None:
    topics = topic_factory(partitions=6)
    url = reference_database_url
    events = _checkins(url, per_grid=12)
    event_ids = [str(e["event_id"]) for e in events]
    total = len(event_ids)
    first_half, second_half = events[: total // 2], events[total // 2 :]
    produce(kafka_bootstrap, topics.checkins, (checkin_message(e) for e in first_half))
    group = f"shared-{uuid.uuid4().hex[:8]}"
    processes = [
        ConsumerProcess(url, kafka_bootstrap, topics, group, tmp_path) for _ in range(MEMBERS)
    ]
    with running(processes[0]):
        wait_until(
            lambda: count_rows(url, "SELECT count(*) FROM checkins") > 0, 120, "first member works"
        )
        for process in processes[1:]:
            process.start()
        # The members share the partitions before the stream is drained: each holds some,
        # but not all six (a member starved of heartbeats may briefly hold all or none).
        wait_until(
            lambda: all(
                any(0 < len(a) < 6 for a in _assigned_partitions(p, topics.checkins))
                for p in processes
            ),
            180,
            "every member held a share of the partitions",
        )
        # One member leaves while the rest of the stream arrives (SIGTERM: it finishes its
        # batch and commits), so the rebalance happens mid-stream.
        producing = threading.Thread(
            target=produce,
            args=(kafka_bootstrap, topics.checkins, [checkin_message(e) for e in second_half]),
        )
        producing.start()
        processes[-1].stop()
        producing.join()
        wait_until(
            lambda: count_rows(url, "SELECT count(*) FROM checkins") == total,
            240,
            "the remaining members drained the topic",
        )
        for process in processes[1:-1]:
            process.stop()

    assert sorted(str(row[0]) for row in _assignments(url)) == sorted(event_ids)


def _spawned_children(pid: int) -> list[int]:
    """Processes that `pid` started with multiprocessing's spawn (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        # Not multiprocessing's resource tracker, which spawn also starts.
        if int(fields[1]) == pid and b"spawn_main" in command:
            found.append(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_one_consume_runs_both_stages_and_its_compliance_child_never_outlives_it(
    reference_database_factory: Callable[[], str],
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
    tmp_path: Path,
) -> None:
    topics = topic_factory()
    database_url = reference_database_factory()
    group = f"stages-{uuid.uuid4().hex[:8]}"
    event_ids = _produce_checkins(kafka_bootstrap, topics.checkins, database_url, per_grid=1)
    process = ConsumerProcess(database_url, kafka_bootstrap, topics, group, tmp_path).start()
    try:
        wait_until(
            lambda: (
                count_rows(database_url, "SELECT count(*) FROM patrol_checkins") == len(event_ids)
            ),
            180,
            "the compliance stage folded every check-in in",
        )
        with psycopg.connect(database_url) as conn:
            stages: dict[str, str] = dict(
                conn.execute(
                    "SELECT topic, consumer_group FROM consumer_offsets"
                    " WHERE consumer_group LIKE %s GROUP BY topic, consumer_group",
                    (f"{group}%",),
                ).fetchall()
            )
        # Each stage commits its offsets under its own group.
        assert stages == {topics.checkins: group, topics.assignments: f"{group}.compliance"}
        assert process.process is not None
        children = _spawned_children(process.process.pid)
        assert len(children) == 1, "the compliance stage runs in one child process"
        # Both stages write to one output; each line says whose it is.
        assigned = re.findall(
            r" (\S+) event_consumers\.positions partitions assigned: \[\('([^']+)'", process.log()
        )
        assert {(stage, topic) for stage, topic in assigned} >= {
            ("wangge-intake-stage", topics.checkins),
            ("wangge-compliance-stage", topics.assignments),
        }
        # Both stages keep the client library to its warnings, as `consume` asked (kafka-python
        # says this at INFO each time a member joins its group).
        assert "Successfully joined group" not in process.log()

        process.kill()
        wait_until(lambda: not _running(children[0]), 60, "the orphaned stage stopped")
    finally:
        if process.alive():
            process.stop()
