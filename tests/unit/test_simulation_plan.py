"""The simulator's plans are realistic, and its truth is what the rules make of them (pure)."""

import json
import random
from collections import Counter
from dataclasses import fields, replace
from datetime import datetime, timedelta

import numpy as np
import pytest
from shapely.geometry import MultiPoint
from shapely.geometry.base import BaseGeometry

from geodata.compliance import ComplianceConfig, IsoWeek, evaluate_week
from geodata.contract import CHECKINS_TOPIC, INCIDENTS_TOPIC
from geodata.crs import to_wgs84
from geodata.dataset.generate import ReferenceDataset, generate_reference_dataset
from geodata.dataset.layers import LOCAL_TZ, REFERENCE_VALID_FROM
from geodata.events import CE_TYPES, EventRefused, parse_checkin
from geodata.spatial_index import GridIndex, GridVersion
from geodata.staffing import AssignmentPeriod
from wangge.simulation import (
    PlatformWeek,
    Profile,
    SimulatedWeek,
    SimulationConfig,
    SimWorker,
    Truth,
    WalkKind,
    World,
    compare,
    simulate_week,
)
from wangge.simulation.compare import ObservedPatrol, ObservedStatus
from wangge.simulation.incidents import MALFORMED_KINDS
from wangge.simulation.phones import FixTable
from wangge.simulation.plan import plan_worker
from wangge.simulation.producer import message_headers
from wangge.simulation.truth import checkin_records
from wangge.simulation.walks import FixQuality, neighbours

WEEK = IsoWeek.parse("2020-W37")
SEED = 37
CONFIG = SimulationConfig()
SUBSET = 150


@pytest.fixture(scope="module")
def dataset() -> ReferenceDataset:
    """The reference city, generated in memory."""
    return generate_reference_dataset(2020)


@pytest.fixture(scope="module")
def world(dataset: ReferenceDataset) -> World:
    """The reference city as the simulator sees it."""
    grids: dict[str, BaseGeometry] = dict(
        zip(dataset.grids["code"], dataset.grids.geometry, strict=True)
    )
    workers = tuple(
        SimWorker(w, g, (AssignmentPeriod(w, g, REFERENCE_VALID_FROM, None),))
        for w, g in zip(dataset.workers["worker_id"], dataset.workers["grid_code"], strict=True)
    )
    return World(
        grids=grids, workers=workers, known_workers=frozenset(w.worker_id for w in workers)
    )


@pytest.fixture(scope="module")
def week(world: World) -> SimulatedWeek:
    """A simulated week of a subset of the city's workers."""
    return simulate_week(world, WEEK, seed=SEED, workers=SUBSET)


def _messages(simulated: SimulatedWeek) -> list[tuple[str, float, bytes]]:
    return [(m.stream, m.send_s, m.value) for batch in simulated.batches(5000) for m in batch]


def test_walk_checkins_stay_in_their_grid_unless_the_plan_says_otherwise(
    world: World, week: SimulatedWeek
) -> None:
    index = GridIndex.build(
        [
            GridVersion(code, code[:12], geometry, REFERENCE_VALID_FROM, None)
            for code, geometry in world.grids.items()
        ],
        tolerance_m=30.0,
    )
    fixes = week.fixes
    crs = np.array([week.plans[w].phone.crs for w in fixes.worker])
    lon, lat = fixes.lon.copy(), fixes.lat.copy()
    for name in set(crs.tolist()):
        mask = crs == name
        lon[mask], lat[mask] = to_wgs84(fixes.lon[mask], fixes.lat[mask], name)
    located = index.locate(lon, lat).codes
    planned = np.array(
        [
            week.plans[w].worker.grid_code if k < 0 else week.plans[w].walks[k].grid_code
            for w, k in zip(fixes.worker.tolist(), fixes.walk.tolist(), strict=True)
        ],
        dtype=object,
    )
    good = fixes.quality == FixQuality.GOOD
    assert fixes.in_grid.tolist() == good.tolist()
    assert (located[good] == planned[good]).all()
    teleported = fixes.quality == FixQuality.TELEPORT
    assert teleported.any()
    assert not (located[teleported] == planned[teleported]).any()
    poor = fixes.quality == FixQuality.POOR_ACCURACY
    assert (fixes.accuracy[poor] > CONFIG.compliance.max_accuracy_m).all()
    assert (fixes.accuracy[good & ~np.isnan(fixes.accuracy)] <= 30).all()
    # A walk in the neighbour grid is in the neighbour grid, and only there.
    owners = np.array([week.plans[w].worker.grid_code for w in fixes.worker], dtype=object)
    elsewhere = good & (planned != owners)
    kinds = {
        week.plans[w].walks[k].kind
        for w, k in zip(fixes.worker[elsewhere], fixes.walk[elsewhere], strict=True)
    }
    assert kinds == {WalkKind.NEIGHBOUR}


def test_walks_go_round_the_grid_not_straight_across(world: World, week: SimulatedWeek) -> None:
    fixes = week.fixes
    for i, plan in enumerate(week.plans):
        for number, walk in enumerate(plan.walks):
            if walk.kind is not WalkKind.PATROL:
                continue
            rows = (fixes.worker == i) & (fixes.walk == number) & fixes.in_grid
            hull = MultiPoint(np.column_stack([fixes.lon[rows], fixes.lat[rows]])).convex_hull
            # Along the streets round the block: the fixes span a good part of the grid,
            # where a straight line would span none of it.
            assert hull.area >= 0.1 * world.grids[walk.grid_code].area


def test_the_profiles_follow_the_configured_shares(world: World) -> None:
    adjacent = neighbours(dict(world.grids))
    plans = [plan_worker(w, WEEK, adjacent[w.grid_code], SEED, CONFIG) for w in world.workers]
    shares = Counter(p.profile for p in plans)
    n = len(plans)
    assert shares[Profile.LAZY] / n == pytest.approx(CONFIG.lazy_share, abs=0.02)
    for profile, share in (
        (Profile.ONE_MORNING, CONFIG.one_morning_share),
        (Profile.SHORT_WALKS, CONFIG.short_walks_share),
        (Profile.NEIGHBOUR_GRID, CONFIG.neighbour_grid_share),
    ):
        assert shares[profile] / n == pytest.approx(share, abs=0.012)
    for plan in plans:
        days = [w.start.astimezone(LOCAL_TZ).date() for w in plan.walks]
        if plan.profile is Profile.ONE_MORNING:
            assert Counter(days).most_common(1)[0][1] == 3
            continue
        assert len(set(days)) == len(days), "walks are on different days"
        low, high = CONFIG.lazy_walks if plan.profile is Profile.LAZY else CONFIG.diligent_walks
        assert low <= len(plan.walks) <= high
        for walk in plan.walks:
            local = walk.start.astimezone(LOCAL_TZ)
            assert CONFIG.start_hours[0] <= local.hour <= CONFIG.start_hours[1]
            assert walk.end.astimezone(LOCAL_TZ).date() == local.date()


def test_weekly_counts_match_each_profile(week: SimulatedWeek) -> None:
    counted = {e.worker_id: e for e in week.truth.entries}
    seen: Counter[Profile] = Counter()
    for plan in week.plans:
        entry = counted[plan.worker.worker_id]
        kinds = Counter(w.kind for w in plan.walks)
        seen[plan.profile] += 1
        if plan.profile is Profile.ONE_MORNING:
            # Three valid walks on one morning count once.
            assert entry.counted == 1 + kinds[WalkKind.PATROL]
            assert sum(p.reason == "already_counted_today" for p in entry.patrols) == 2
        else:
            # Every proper walk in the own grid is exactly one counted patrol, whatever its
            # poor fixes, teleports, clock skew or late upload; gaming walks never count.
            assert entry.counted == kinds[WalkKind.PATROL]
        if plan.profile is Profile.SHORT_WALKS:
            assert (
                sum(p.reason == "invalid:too_short" for p in entry.patrols) == kinds[WalkKind.SHORT]
            )
        assert entry.status == ("met" if entry.counted >= entry.required == 3 else "missed")
    assert seen[Profile.DILIGENT] > 0
    assert seen[Profile.LAZY] > 0
    assert (
        sum(seen[p] for p in (Profile.ONE_MORNING, Profile.SHORT_WALKS, Profile.NEIGHBOUR_GRID)) > 0
    )


def test_every_checkin_is_accepted_at_its_send_time_and_malformed_ones_are_refused(
    week: SimulatedWeek,
) -> None:
    """No fix is ever more than 5 minutes ahead of when it is sent, so even live none is refused."""
    simulated_workers = {p.worker.worker_id for p in week.plans}
    reasons: Counter[str] = Counter()
    distinct = set()
    deliveries = 0
    for stream, send_s, value in _messages(week):
        if stream != "checkins":
            continue
        now = datetime.fromtimestamp(send_s, LOCAL_TZ)
        try:
            checkin = parse_checkin(value, now=now)
        except EventRefused as refused:
            reasons[refused.reason.value] += 1
            continue
        if checkin.worker_id not in simulated_workers:
            reasons["unknown_worker"] += 1
            continue
        distinct.add(checkin.event_id)
        deliveries += 1
    assert len(distinct) == week.truth.counts["checkins"] == len(week.fixes)
    assert deliveries - len(distinct) == week.truth.counts["duplicate_deliveries"] > 0
    assert sum(reasons.values()) == week.truth.counts["malformed"]
    expected = {"null_island": "coordinate_out_of_range"}
    assert set(reasons) == {expected.get(k, k) for k in MALFORMED_KINDS}


def test_every_message_carries_the_contract_headers_with_its_event_time_as_sent(
    week: SimulatedWeek,
) -> None:
    ce_types = {"checkins": CE_TYPES[CHECKINS_TOPIC], "incidents": CE_TYPES[INCIDENTS_TOPIC]}
    messages = [m for batch in week.batches(5000) for m in batch]
    assert {m.stream for m in messages} == set(ce_types)
    for message in messages:
        ce_type = ce_types[message.stream]
        # The bytes phones' messages always carried: ce_time is the event time as formatted.
        assert message_headers(message, ce_type) == [
            ("ce_specversion", b"1.0"),
            ("ce_id", message.event_id.encode()),
            ("ce_source", b"wangge/simulator"),
            ("ce_type", ce_type.encode()),
            ("ce_time", message.event_time.encode()),
        ]


def test_late_uploads_come_hours_later_but_before_the_week_freezes(week: SimulatedWeek) -> None:
    assert week.truth.counts["late_walks"] > 0
    compliance = CONFIG.compliance
    freeze = (WEEK.end(compliance.tz) + compliance.allowed_lateness).timestamp()
    assert week.send_s.max() < freeze
    assert (np.diff(week.send_s) >= 0).all()
    skews = [abs(p.phone.clock_skew_s) for p in week.plans]
    assert max(skews) <= CONFIG.max_clock_skew_s
    assert any(skews)


def _worker_table(week: SimulatedWeek, index: int) -> FixTable:
    rows = np.flatnonzero(week.fixes.worker == index)
    return FixTable(*(getattr(week.fixes, f.name)[rows] for f in fields(FixTable)))


def test_duplicates_and_delivery_order_do_not_change_the_truth(week: SimulatedWeek) -> None:
    config = ComplianceConfig()
    rng = random.Random(5)
    for index, (plan, entry) in enumerate(zip(week.plans, week.truth.entries, strict=True)):
        records = checkin_records(plan, _worker_table(week, index), config)
        shuffled = records + rng.sample(records, len(records) // 10)
        rng.shuffle(shuffled)
        result = evaluate_week(
            shuffled,
            plan.worker.periods,
            worker_id=plan.worker.worker_id,
            grid_code=entry.grid_code,
            week=WEEK,
            as_of=week.truth.as_of,
            config=config,
        )
        assert (result.status, result.counted) == (entry.status, entry.counted)
        assert [p.start for p in result.patrols] == [p.start for p in entry.patrols]


def test_same_seed_same_week_and_a_subset_keeps_its_workers_plans(world: World) -> None:
    small = simulate_week(world, WEEK, seed=SEED, workers=12)
    again = simulate_week(world, WEEK, seed=SEED, workers=12)
    assert _messages(small) == _messages(again)
    assert small.truth.to_json() == again.truth.to_json()
    adjacent = neighbours(dict(world.grids))
    for plan in small.plans:
        alone = plan_worker(plan.worker, WEEK, adjacent[plan.worker.grid_code], SEED, CONFIG)
        assert alone == plan
    other = simulate_week(world, WEEK, seed=SEED + 1, workers=12)
    assert other.truth.to_json() != small.truth.to_json()


def test_the_truth_file_round_trips(week: SimulatedWeek) -> None:
    text = week.truth.to_json()
    assert Truth.from_json(text) == week.truth
    body = json.loads(text)
    entry = body["entries"][0]
    assert {
        "worker_id",
        "grid_code",
        "week",
        "required",
        "counted",
        "status",
        "patrols",
        "walks",
    } <= set(entry)
    with pytest.raises(ValueError, match="not a"):
        Truth.from_json(json.dumps({"format": "something else"}))


def _platform_of(truth: Truth) -> PlatformWeek:
    """What a platform that agrees on everything would report."""
    return PlatformWeek(
        statuses={
            (e.worker_id, e.grid_code): ObservedStatus(e.status, e.counted, e.required)
            for e in truth.entries
        },
        patrols={
            (e.worker_id, e.grid_code): [
                ObservedPatrol(p.start, p.end, p.checkins, p.valid, p.counted, p.reason)
                for p in e.patrols
            ]
            for e in truth.entries
        },
        engine={(e.worker_id, e.grid_code): e.status for e in truth.entries},
        watermark=truth.as_of + timedelta(hours=6),
        checkins={e.worker_id: e.checkins_in_window for e in truth.entries},
        late={},
    )


def test_compare_finds_no_disagreement_with_an_agreeing_platform(week: SimulatedWeek) -> None:
    comparison = compare(week.truth, _platform_of(week.truth))
    assert comparison.agrees
    assert comparison.engine_compared
    assert sum(comparison.confusion.values()) == len(week.truth.entries)
    assert all(expected == actual for expected, actual in comparison.confusion)


def test_compare_names_every_disagreement_and_its_reason(week: SimulatedWeek) -> None:
    truth = week.truth
    platform = _platform_of(truth)
    met = next(e for e in truth.entries if e.status == "met")
    key = (met.worker_id, met.grid_code)
    statuses = dict(platform.statuses) | {key: ObservedStatus("missed", met.counted - 1, 3)}
    first = platform.patrols[key][0]
    patrols = dict(platform.patrols) | {key: [replace(first, checkins=first.checkins - 1)]}
    checkins = dict(platform.checkins) | {met.worker_id: met.checkins_in_window - 2}
    broken = replace(
        platform,
        statuses=statuses,
        patrols=patrols,
        checkins=checkins,
        late={met.worker_id: 2},
        watermark=truth.as_of - timedelta(hours=1),
    )
    comparison = compare(truth, broken)
    whats = Counter(d.what for d in comparison.disagreements)
    assert whats["status"] == 1
    assert whats["counted"] == 1
    assert whats["check-ins"] == 1
    assert whats["late"] == 1
    assert whats["patrol"] == len(met.patrols)  # one differs, the others are missing
    assert not comparison.engine_compared
    assert comparison.notes
    assert comparison.confusion[("met", "missed")] == 1
    assert {d.worker_id for d in comparison.disagreements} == {met.worker_id}
