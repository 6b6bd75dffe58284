"""Check-ins partitioned by event week: made ahead, made on demand, nothing lost, converted.

The storage stage's own write (`event_store.insert_formatted_checkins`) and the compliance
engine's (`compliance_store.insert_checkins`) against a real PostGIS: a batch makes its
weeks' partitions and next week's; a check-in for a week without a partition is stored; a
row inserted directly into a week without one waits in checkins_default and moves when
the week's partition is made, also when the maker first had to give up on a lock;
migrations 0022 and 0023 move existing tables' rows into partitions.
"""

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from geodata.compliance import CheckinRecord
from geodata.dataset.layers import LOCAL_TZ
from geodata.db import compliance_store, event_store, migrate
from geodata.db.engine import libpq_url

pytestmark = pytest.mark.integration

WEEK_2019W10 = datetime(2019, 3, 5, 9, 30, tzinfo=LOCAL_TZ)  # a Tuesday of ISO week 2019-W10


@pytest.fixture(scope="module")
def database(database_factory: Callable[..., str]) -> str:
    """One migrated database (no grids: check-ins are stored as the stage computed them)."""
    return libpq_url(database_factory())


@pytest.fixture
def conn(database: str) -> Iterator[psycopg.Connection]:
    """A connection whose transaction the test commits, as the consumer's batch does."""
    with psycopg.connect(database) as connection:
        yield connection


def batch(*times: datetime, event_ids: list[str] | None = None) -> str:
    """COPY rows of check-ins at `times` (new ids unless given), as the stage formats them."""
    ids = event_ids or [str(uuid.uuid4()) for _ in times]
    n = len(times)
    return event_store.format_checkins(
        event_store.CheckinBatch(
            event_ids=ids,
            worker_ids=["W00001"] * n,
            recorded_at=list(times),
            lon=[107.15] * n,
            lat=[34.36] * n,
            crs=["EPSG:4326"] * n,
            accuracy_m=[5.0] * n,
            wgs_lon=[107.15] * n,
            wgs_lat=[34.36] * n,
            grid_codes=["610302001001001"] * n,
            in_assigned_grid=[True] * n,
            assignment_rules=["contains"] * n,
            flags=[[] for _ in times],
        )
    )


def partition_of(conn: psycopg.Connection, event_id: str) -> str:
    """The partition table a check-in is stored in."""
    row = conn.execute(
        "SELECT tableoid::regclass::text FROM checkins WHERE event_id = %s", (event_id,)
    ).fetchone()
    assert row is not None, f"check-in {event_id} is not stored"
    return str(row[0])


def partitions(conn: psycopg.Connection, table: str = "checkins") -> set[str]:
    """Every partition of `table`."""
    rows = conn.execute(
        "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = %s::regclass",
        (table,),
    ).fetchall()
    return {str(row[0]) for row in rows}


def week_name(t: datetime, table: str = "checkins") -> str:
    """The partition name of `t`'s local ISO week."""
    year, week, _ = t.astimezone(LOCAL_TZ).isocalendar()
    return f"{table}_{year}w{week:02d}"


def patrol_checkin(at: datetime, event_id: uuid.UUID | None = None) -> tuple[CheckinRecord, bool]:
    """A check-in as the compliance engine stores it, in its assigned grid."""
    record = CheckinRecord(event_id or uuid.uuid4(), "W00001", "610302001001001", at, 5.0)
    return record, True


def test_a_batch_makes_next_weeks_partition_ahead(conn: psycopg.Connection) -> None:
    now = datetime.now(UTC)
    ahead = week_name(now + timedelta(days=7))
    conn.execute(f"ALTER TABLE checkins DETACH PARTITION {ahead}")
    conn.execute(f"DROP TABLE {ahead}")
    conn.commit()
    assert ahead not in partitions(conn)

    [new] = event_store.insert_formatted_checkins(conn, batch(now))
    conn.commit()

    assert ahead in partitions(conn)
    assert partition_of(conn, new) == week_name(now)
    indexes = conn.execute(
        "SELECT indexdef FROM pg_indexes WHERE tablename = %s ORDER BY indexname", (ahead,)
    ).fetchall()
    assert len(indexes) == 4  # the key, geometry, worker and grid indexes, per partition


def test_a_checkin_of_a_week_without_a_partition_is_stored_in_its_own(
    conn: psycopg.Connection,
) -> None:
    assert week_name(WEEK_2019W10) == "checkins_2019w10"
    assert "checkins_2019w10" not in partitions(conn)

    event_id = str(uuid.uuid4())
    new = event_store.insert_formatted_checkins(conn, batch(WEEK_2019W10, event_ids=[event_id]))
    conn.commit()

    assert new == {event_id}
    assert partition_of(conn, event_id) == "checkins_2019w10"
    # Its bounds are the local week's: Monday 00:00 Asia/Shanghai to the next Monday.
    [bound] = conn.execute(
        "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = 'checkins_2019w10'"
    ).fetchone() or [None]
    assert bound == ("FOR VALUES FROM ('2019-03-03 16:00:00+00') TO ('2019-03-10 16:00:00+00')"), (
        bound
    )


def test_a_redelivered_checkin_is_stored_once_and_a_reused_id_at_another_time_twice(
    conn: psycopg.Connection,
) -> None:
    event_id = str(uuid.uuid4())
    at = datetime(2020, 9, 8, 9, tzinfo=LOCAL_TZ)
    first = event_store.insert_formatted_checkins(conn, batch(at, event_ids=[event_id]))
    again = event_store.insert_formatted_checkins(conn, batch(at, event_ids=[event_id]))
    other_week = at + timedelta(days=30)
    reused = event_store.insert_formatted_checkins(conn, batch(other_week, event_ids=[event_id]))
    conn.commit()

    assert (first, again, reused) == ({event_id}, set(), {event_id})
    stored = conn.execute(
        "SELECT count(*) FROM checkins WHERE event_id = %s", (event_id,)
    ).fetchone()
    assert stored == (2,)


def test_a_row_inserted_before_its_partition_waits_in_the_default_and_moves(
    conn: psycopg.Connection, database: str
) -> None:
    at = datetime(2018, 6, 6, 12, tzinfo=LOCAL_TZ)
    name = week_name(at)
    event_id = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO checkins (event_id, worker_id, recorded_at, lon, lat, geom,"
        " assignment_rule) VALUES (%s, 'W00001', %s, 107.15, 34.36,"
        " ST_SetSRID(ST_MakePoint(107.15, 34.36), 4326), 'contains')",
        (event_id, at),
    )
    conn.commit()
    assert partition_of(conn, event_id) == "checkins_default"

    # Another transaction reading checkins holds checkins_default: the maker gives up
    # after its lock_timeout (200 ms) rather than wait, and the row stays where it is.
    with psycopg.connect(database) as reader:
        reader.execute("SELECT count(*) FROM checkins")
        [made] = conn.execute("SELECT checkin_week_partition(%s)", (at,)).fetchone() or [None]
        conn.commit()
        assert made is None
        assert partition_of(conn, event_id) == "checkins_default"
        reader.rollback()

    [made] = conn.execute("SELECT checkin_week_partition(%s)", (at,)).fetchone() or [None]
    conn.commit()
    assert made == name
    assert partition_of(conn, event_id) == name
    default = conn.execute("SELECT count(*) FROM checkins_default").fetchone()
    assert default == (0,)


def test_the_migrations_move_existing_checkins_into_week_partitions(
    database_factory: Callable[..., str],
) -> None:
    url = database_factory(migrated=False)
    migrate.upgrade(url, "0016")
    times = [datetime(2020, 9, 7, 8, tzinfo=LOCAL_TZ) + timedelta(days=d) for d in (0, 3, 7, 8)]
    with psycopg.connect(libpq_url(url)) as conn:
        for at in times:
            conn.execute(
                "INSERT INTO checkins (event_id, worker_id, recorded_at, lon, lat, geom,"
                " assignment_rule) VALUES (gen_random_uuid(), 'W00001', %s, 107.15, 34.36,"
                " ST_SetSRID(ST_MakePoint(107.15, 34.36), 4326), 'contains')",
                (at,),
            )
            conn.execute(
                "INSERT INTO patrol_checkins (event_id, worker_id, recorded_at,"
                " in_assigned_grid) VALUES (gen_random_uuid(), 'W00001', %s, true)",
                (at,),
            )
        conn.commit()

    migrate.upgrade(url, "head")

    with psycopg.connect(libpq_url(url)) as conn:
        for table in ("checkins", "patrol_checkins"):
            counts = conn.execute(
                f"SELECT tableoid::regclass::text, count(*) FROM {table} GROUP BY 1 ORDER BY 1"
            ).fetchall()
            assert counts == [(f"{table}_2020w37", 2), (f"{table}_2020w38", 2)]
            now = week_name(datetime.now(UTC), table)
            assert {now, f"{table}_default"} <= partitions(conn, table)


def test_a_patrol_checkin_of_a_week_without_a_partition_is_stored_in_its_own(
    conn: psycopg.Connection,
) -> None:
    at = datetime(2019, 5, 8, 10, tzinfo=LOCAL_TZ)
    name = week_name(at, "patrol_checkins")
    ahead = week_name(datetime.now(UTC) + timedelta(days=7), "patrol_checkins")
    conn.execute(f"ALTER TABLE patrol_checkins DETACH PARTITION {ahead}")
    conn.execute(f"DROP TABLE {ahead}")
    conn.commit()
    assert not {name, ahead} & partitions(conn, "patrol_checkins")

    record, assigned = patrol_checkin(at)
    new = compliance_store.insert_checkins(conn, [(record, assigned)])
    conn.commit()

    assert new == {(record.event_id, at)}
    assert {name, ahead} <= partitions(conn, "patrol_checkins")
    [where] = conn.execute(
        "SELECT tableoid::regclass::text FROM patrol_checkins WHERE event_id = %s",
        (record.event_id,),
    ).fetchone() or [None]
    assert where == name
    indexes = conn.execute("SELECT count(*) FROM pg_indexes WHERE tablename = %s", (ahead,))
    assert indexes.fetchone() == (2,)  # the key and the engine's (worker, grid, time) index


def test_the_engine_skips_a_redelivered_checkin_and_keeps_a_reused_id_at_another_time(
    conn: psycopg.Connection,
) -> None:
    at = datetime(2020, 9, 8, 9, tzinfo=LOCAL_TZ)
    first = patrol_checkin(at)
    event_id = first[0].event_id
    later = patrol_checkin(at + timedelta(days=30), event_id)
    stored = compliance_store.insert_checkins(conn, [first, first])
    again = compliance_store.insert_checkins(conn, [first, later])
    compliance_store.mark_late(conn, [(event_id, later[0].recorded_at)])
    conn.commit()

    assert (stored, again) == ({(event_id, at)}, {(event_id, later[0].recorded_at)})
    rows = conn.execute(
        "SELECT recorded_at, late FROM patrol_checkins WHERE event_id = %s ORDER BY 1",
        (event_id,),
    ).fetchall()
    assert rows == [(at, False), (later[0].recorded_at, True)]


def test_last_fixes_reads_each_workers_newest_fix_across_weeks(conn: psycopg.Connection) -> None:
    older = datetime(2021, 3, 1, 9, tzinfo=LOCAL_TZ)
    newer = datetime(2021, 3, 9, 9, tzinfo=LOCAL_TZ)  # the next week, its own partition
    event_store.insert_formatted_checkins(conn, batch(newer, older))
    conn.commit()

    fixes = event_store.last_fixes(conn, ["W00001", "W99999"])

    assert set(fixes) == {"W00001"}
    newest = conn.execute("SELECT max(recorded_at) FROM checkins WHERE worker_id = 'W00001'")
    assert fixes["W00001"].recorded_at == (newest.fetchone() or [None])[0]
    assert fixes["W00001"].recorded_at >= newer
