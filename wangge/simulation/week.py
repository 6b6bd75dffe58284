"""A whole simulated week: plans, fixes, incidents, faults, the delivery schedule, the truth.

`simulate_week` is pure (the world in, every message and the expected outcome out); the
Kafka adapter only paces `SimulatedWeek.batches()` onto the topics.
"""

import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from geodata.compliance import IsoWeek
from wangge.simulation.incidents import MALFORMED_KINDS, Message, incidents, malformed
from wangge.simulation.phones import (
    Deliveries,
    FixTable,
    deliveries,
    epoch_s,
    shapes_for,
    worker_fixes,
)
from wangge.simulation.plan import (
    SimulationConfig,
    WorkerPlan,
    World,
    choose_workers,
    plan_worker,
)
from wangge.simulation.truth import Truth, TruthEntry, expected_entries, plain
from wangge.simulation.walks import FixQuality, neighbours

Progress = Callable[[str, int, int], None]

CITY_WORKERS: Final = 2381
"""Workers of the reference city, the base of the incident rate."""

_FIX, _OTHER = 0, 1
_PING_START: Final = timedelta(minutes=15)  # after the week; clear of any Sunday walk


@dataclass(frozen=True)
class SimulatedWeek:
    """Every message of the week in sending order, and what the platform should conclude."""

    week: IsoWeek
    plans: list[WorkerPlan]
    fixes: FixTable
    others: list[Message]
    #: The schedule: per message, (source, index) sorted by send time.
    send_s: npt.NDArray[np.float64]
    source: npt.NDArray[np.int64]
    index: npt.NDArray[np.int64]
    truth: Truth
    timezone: str

    def __len__(self) -> int:
        return len(self.send_s)

    def first_checkin_s(self) -> float | None:
        """When the week's first check-in is sent (epoch s), None if it has none: a replay
        starts just before it rather than at the night's few reports."""
        fixes = np.flatnonzero(self.source == _FIX)
        return float(self.send_s[fixes[0]]) if len(fixes) else None

    def batches(self, size: int = 20_000) -> Iterator[list[Message]]:
        """The messages in sending order, `size` at a time, formatted as phones send them."""
        worker_ids = np.array([p.worker.worker_id for p in self.plans], dtype=object)
        crs = np.array([p.phone.crs for p in self.plans], dtype=object)
        for start in range(0, len(self), size):
            stop = min(start + size, len(self))
            rows, send = self.index[start:stop], self.send_s[start:stop]
            is_fix = self.source[start:stop] == _FIX
            formatted = iter(
                _fix_messages(
                    self.fixes, rows[is_fix], send[is_fix], worker_ids, crs, self.timezone
                )
            )
            yield [
                next(formatted) if fix else self.others[row]
                for fix, row in zip(is_fix.tolist(), rows.tolist(), strict=True)
            ]


def _uuid_strings(ids: npt.NDArray[np.uint8]) -> list[str]:
    text = ids.tobytes().hex()
    return [
        f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        for h in (text[i : i + 32] for i in range(0, len(text), 32))
    ]


def _local_times(recorded_s: npt.NDArray[np.int64], tz_name: str) -> list[str]:
    """RFC 3339 local times with their offset, formatted for a whole column at once."""
    tz = ZoneInfo(tz_name)
    ends = (int(recorded_s.min()), int(recorded_s.max()))
    offsets = {datetime.fromtimestamp(t, tz).utcoffset() for t in ends}
    if len(offsets) != 1:  # a DST change in the span: format each time on its own
        return [datetime.fromtimestamp(int(t), tz).isoformat() for t in recorded_s.tolist()]
    offset = offsets.pop() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    suffix = f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    local = (recorded_s + minutes * 60).astype("datetime64[s]")
    return [f"{t}{suffix}" for t in np.datetime_as_string(local).tolist()]


def _fix_messages(
    fixes: FixTable,
    rows: npt.NDArray[np.int64],
    send_s: npt.NDArray[np.float64],
    worker_ids: npt.NDArray[np.object_],
    crs: npt.NDArray[np.object_],
    tz_name: str,
) -> list[Message]:
    """Check-ins as phones send them: keyed by worker id, compact JSON."""
    if not len(rows):
        return []
    workers = worker_ids[fixes.worker[rows]].tolist()
    crs_of = crs[fixes.worker[rows]].tolist()
    lon = np.char.mod("%.7f", fixes.lon[rows]).tolist()
    lat = np.char.mod("%.7f", fixes.lat[rows]).tolist()
    accuracy = fixes.accuracy[rows]
    accuracy_text = np.char.mod(',"accuracy_m":%.1f', np.nan_to_num(accuracy)).tolist()
    has_accuracy = (~np.isnan(accuracy)).tolist()
    times = _local_times(fixes.recorded_s[rows], tz_name)
    sends = send_s.tolist()
    ids = _uuid_strings(fixes.ids[rows])
    messages = []
    for i, event_id in enumerate(ids):
        crs_text = "" if crs_of[i] == "EPSG:4326" else f',"crs":"{crs_of[i]}"'
        value = (
            f'{{"event_id":"{event_id}","worker_id":"{workers[i]}","lon":{lon[i]},'
            f'"lat":{lat[i]},"recorded_at":"{times[i]}"'
            f"{accuracy_text[i] if has_accuracy[i] else ''}{crs_text}}}"
        )
        messages.append(
            Message("checkins", sends[i], workers[i].encode(), value.encode(), event_id, times[i])
        )
    return messages


def _ping_times(
    week: IsoWeek, count: int, config: SimulationConfig, rng: np.random.Generator
) -> list[npt.NDArray[np.int64]]:
    """Idle pings after the week, round-robin over the workers (so no ping makes a patrol)."""
    end = week.end(config.compliance.tz)
    first = epoch_s(end + _PING_START)
    last = epoch_s(end + timedelta(hours=config.tail_hours))
    times = np.arange(first, last + 1, config.ping_interval_s, dtype=np.int64)
    order = rng.permutation(count) if count else np.empty(0, dtype=np.int64)
    per_worker: list[list[int]] = [[] for _ in range(count)]
    for k, t in enumerate(times.tolist()):
        if count:
            per_worker[int(order[k % count])].append(t)
    return [np.array(ts, dtype=np.int64) for ts in per_worker]


def _unknown_worker(world: World) -> str:
    known = world.known_workers | {w.worker_id for w in world.workers}
    return next(f"W{n:05d}" for n in range(99999, 0, -1) if f"W{n:05d}" not in known)


def simulate_week(
    world: World,
    week: IsoWeek,
    *,
    seed: int,
    workers: int | None = None,
    config: SimulationConfig | None = None,
    progress: Progress | None = None,
) -> SimulatedWeek:
    """Plan, walk and schedule a week for `workers` of the world's workers (all if None)."""
    config = config or SimulationConfig()
    notify = progress or (lambda _step, _done, _total: None)
    compliance = config.compliance
    chosen = choose_workers(world.workers, workers, seed)
    notify("Finding neighbouring grids", 0, 1)
    adjacent = neighbours(dict(world.grids))
    plans = [plan_worker(w, week, adjacent.get(w.grid_code, []), seed, config) for w in chosen]
    codes = {w.grid_code for p in plans for w in p.walks} | {p.worker.grid_code for p in plans}
    codes |= {
        period.grid_code
        for p in plans
        for period in p.worker.periods
        if period.grid_code in world.grids
    }
    notify("Shaping grids", 0, 1)
    shapes = shapes_for(dict(world.grids), codes)
    pings = _ping_times(week, len(plans), config, np.random.default_rng([seed, 0x9146]))

    tables: list[FixTable] = []
    sent: list[Deliveries] = []
    entries: list[TruthEntry] = []
    late_walks = offset = 0
    for i, plan in enumerate(plans):
        rng = np.random.default_rng([seed, zlib.crc32(plan.worker.worker_id.encode()), 1])
        table = worker_fixes(plan, i, shapes, pings[i], config, rng)
        delivered, late = deliveries(table, offset, week, config, rng)
        late_of = {int(w) for w in np.unique(table.walk[delivered.late[: len(table)]])}
        entries += expected_entries(plan, table, late_of, week, compliance)
        tables.append(table)
        sent.append(delivered)
        late_walks += late
        offset += len(table)
        if i % 25 == 0 or i == len(plans) - 1:
            notify("Walking the week", i + 1, len(plans))
    fixes = FixTable.concat(tables)

    notify("Incidents and malformed messages", 0, 1)
    rng = np.random.default_rng([seed, 0x1C1])
    share = len(plans) / CITY_WORKERS
    others = incidents(week, plans, fixes, dict(world.grids), share, config, rng)
    broken = max(len(MALFORMED_KINDS), round(len(fixes) * config.malformed_per_million / 1e6))
    others += malformed(week, plans, _unknown_worker(world), broken, config, rng)

    fix_send = np.concatenate([d.send_s for d in sent]) if sent else np.empty(0)
    fix_index = np.concatenate([d.index for d in sent]) if sent else np.empty(0, dtype=np.int64)
    late_deliveries = int(sum(d.late.sum() for d in sent))
    send_s = np.concatenate([fix_send, [m.send_s for m in others]])
    source = np.concatenate([np.full(len(fix_send), _FIX), np.full(len(others), _OTHER)])
    index = np.concatenate([fix_index, np.arange(len(others))]).astype(np.int64)
    order = np.argsort(send_s, kind="stable")

    counts: dict[str, int] = {
        "workers": len(plans),
        "walks": sum(len(p.walks) for p in plans),
        "checkins": len(fixes),
        "pings": int(np.sum(fixes.walk < 0)),
        "poor_accuracy_fixes": int(np.sum(fixes.quality == FixQuality.POOR_ACCURACY)),
        "teleports": int(np.sum(fixes.quality == FixQuality.TELEPORT)),
        "checkin_deliveries": len(fix_send),
        "duplicate_deliveries": len(fix_send) - len(fixes),
        "late_walks": late_walks,
        "late_deliveries": late_deliveries,
        "incidents": sum(m.stream == "incidents" for m in others),
        "malformed": broken,
        "messages": len(send_s),
        "phones_gcj02": sum(p.phone.crs == "GCJ-02" for p in plans),
        "phones_skewed_clock": sum(p.phone.clock_skew_s != 0 for p in plans),
    }
    counts |= {f"profile_{k}": v for k, v in Counter(str(p.profile) for p in plans).items()}
    truth = Truth(
        week=week,
        seed=seed,
        as_of=week.end(compliance.tz),
        entries=tuple(entries),
        counts=counts,
        config=plain(asdict(config)),
    )
    return SimulatedWeek(
        week=week,
        plans=plans,
        fixes=fixes,
        others=others,
        send_s=send_s[order],
        source=source[order],
        index=index[order],
        truth=truth,
        timezone=compliance.timezone,
    )
