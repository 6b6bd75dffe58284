"""Readiness from cached probes (`GET /healthz`) and bare liveness (`GET /livez`).

The probes run in the background, each in a thread of its own with its own timeout,
every `probe_interval_s`: the database (reachable, schema at head, grids loaded, and the
consumers' heartbeats) and the broker (the contract's topics, each with the configured
partition count). /healthz only reads their last results and the producer's breaker, so
it answers at once whatever is down, and says how old each result is.
"""

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from alembic.runtime.migration import MigrationContext
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text

import kafka_clients
from geodata.contract import Topics
from geodata.db import migrate
from geodata.db.features import COLLECTIONS, in_force
from geodata.db.heartbeats import Heartbeat, read_heartbeats
from grid_service.producer import EventProducer

logger = logging.getLogger(__name__)

#: The grids in force now, by the predicate OGC reads them with: a redrawing loaded ahead
#: of its date counts from that date, as locate and the consumers see it.
_GRIDS_IN_FORCE: Final = text(f"SELECT count(*) FROM grids WHERE {in_force(COLLECTIONS['grids'])}")

COMPLIANCE_GROUP_SUFFIX: Final = ".compliance"
"""The compliance stage's consumer group is the intake group's name plus this."""


@dataclass(frozen=True)
class HealthConfig:
    """How often the probes run, how long each may take, and how fresh a heartbeat must be."""

    probe_interval_s: float = 2.0
    probe_timeout_s: float = 1.5
    heartbeat_window_s: float = 30.0

    @property
    def stale_after_s(self) -> float:
        """A probe result older than this no longer counts: its probe missed two rounds."""
        return 2 * self.probe_interval_s + self.probe_timeout_s


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe's outcome, what it found, and when it finished (monotonic seconds)."""

    ok: bool
    detail: Mapping[str, Any]
    at: float
    beats: tuple[Heartbeat, ...] = field(default=())


Probe = Callable[[], ProbeResult]


class _ProbeLoop:
    """Run `probe` every interval in a worker thread; a worker that overruns its timeout
    is reported and left to finish, and no second one starts beside it."""

    def __init__(self, name: str, probe: Probe, config: HealthConfig, failure: str) -> None:
        self.name = name
        self._probe = probe
        self._config = config
        self._failure = failure
        self._lock = threading.Lock()
        self._result: ProbeResult | None = None
        self._worker: threading.Thread | None = None
        self._worker_started = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"wangge-health-{name}", daemon=True)

    @property
    def result(self) -> ProbeResult | None:
        """The last result, or None before the first probe finished."""
        with self._lock:
            return self._result

    def start(self) -> None:
        """Start probing in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop probing; a worker still waiting on its service is left behind (a daemon)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._config.probe_timeout_s + 1)

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._attempt, name=f"wangge-probe-{self.name}", daemon=True
                )
                self._worker_started = began
                self._worker.start()
            self._worker.join(timeout=self._config.probe_timeout_s)
            if self._worker.is_alive():
                waited = time.monotonic() - self._worker_started
                self._store(
                    ProbeResult(False, {"error": f"no answer for {waited:.1f} s"}, time.monotonic())
                )
            self._stop.wait(max(0.0, self._config.probe_interval_s - (time.monotonic() - began)))

    def _attempt(self) -> None:
        try:
            result = self._probe()
        except Exception as exc:  # any failure of a probe is "not ready", never a crash
            result = ProbeResult(False, {"error": self._failure}, time.monotonic())
            if self.result is None or self.result.ok:
                logger.warning("health probe %s failed: %r", self.name, exc)
        else:
            if not result.ok and (self.result is None or self.result.ok):
                logger.warning("health probe %s: not ready: %s", self.name, dict(result.detail))
        self._store(result)

    def _store(self, result: ProbeResult) -> None:
        with self._lock:
            self._result = result


#: The broker client's share of a probe's time (see `HealthMonitor._probe_broker`).
BROKER_CLIENT_SHARE: Final = 0.75


def stage_groups(consumer_group: str) -> dict[str, str]:
    """Each consumer stage's group: the intake's is the configured group."""
    return {"intake": consumer_group, "compliance": consumer_group + COMPLIANCE_GROUP_SUFFIX}


class HealthMonitor:
    """The background probes of one app and the readiness they add up to."""

    def __init__(
        self,
        engine: Engine,
        bootstrap: str,
        *,
        topics: Topics,
        topic_partitions: int,
        consumer_group: str,
        producer: EventProducer,
        config: HealthConfig | None = None,
    ) -> None:
        self.engine = engine
        self.bootstrap = bootstrap
        self.topics = topics
        self.topic_partitions = topic_partitions
        self.groups = stage_groups(consumer_group)
        self.producer = producer
        self.config = config or HealthConfig()
        self._database = _ProbeLoop(
            "database", self._probe_database, self.config, "database unreachable"
        )
        self._broker = _ProbeLoop("broker", self._probe_broker, self.config, "broker unreachable")

    def start(self) -> None:
        """Start both probes."""
        self._database.start()
        self._broker.start()

    def stop(self) -> None:
        """Stop both probes."""
        self._database.stop()
        self._broker.stop()

    def _probe_database(self) -> ProbeResult:
        timeout_ms = int(self.config.probe_timeout_s * 1000)
        with self.engine.connect() as connection:
            connection.execute(text(f"SET LOCAL statement_timeout = {timeout_ms}"))
            revision = MigrationContext.configure(connection).get_current_revision()
            head = migrate.head_revision()
            detail: dict[str, Any] = {"revision": revision, "head": head}
            if revision != head:
                detail["error"] = "schema not at head: run `wangge db upgrade`"
                return ProbeResult(False, detail, time.monotonic())
            grids = connection.execute(_GRIDS_IN_FORCE, {"t_now": datetime.now(UTC)}).scalar_one()
            beats = read_heartbeats(connection, group_ids=list(self.groups.values()))
        detail["grids"] = grids
        if not grids:
            detail["error"] = "no grids loaded"
        return ProbeResult(bool(grids), detail, time.monotonic(), tuple(beats))

    def _probe_broker(self) -> ProbeResult:
        # The client gives up before the loop stops waiting for it: kafka-python retries a
        # refused bootstrap until its timeout, and with the loop's own a refused broker was
        # told as "no answer" as often as "unreachable" (the loop's timeout is for a broker
        # that takes the connection and never answers).
        timeout_ms = int(self.config.probe_timeout_s * 1000 * BROKER_CLIENT_SHARE)
        admin = kafka_clients.admin(
            kafka_clients.KafkaConfig(self.bootstrap),
            "healthz",
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
        )
        try:
            # By name, and without auto-creation: a health check never makes a topic.
            described = admin.describe_topics(list(self.topics.all()))
        finally:
            admin.close()
        found = {
            str(topic["name"]): len(topic.get("partitions") or [])
            for topic in described
            if topic.get("error_code", 0) == 0
        }
        topics = {
            name: {
                "partitions": found.get(name),
                "ok": found.get(name) == self.topic_partitions,
            }
            for name in self.topics.all()
        }
        detail: dict[str, Any] = {"partitions_expected": self.topic_partitions, "topics": topics}
        ok = all(topic["ok"] for topic in topics.values())
        if not ok:
            detail["error"] = "topics missing or with another partition count"
        return ProbeResult(ok, detail, time.monotonic())

    def report(self) -> tuple[bool, dict[str, Any]]:
        """Readiness and its parts, from the cached probes (no I/O)."""
        now = time.monotonic()
        database = self._part(self._database.result, now)
        broker = self._part(self._broker.result, now)
        status = self.producer.status()
        producer: dict[str, Any] = {"ok": status.ok, "state": status.state}
        if status.state == "closed":
            producer |= {"in_flight": status.in_flight, "reason": status.reason}
        elif not status.ok:
            producer |= {
                "away_for_s": status.away_for_s,
                "reason": status.reason,
                "retry_after_s": status.retry_after_s,
            }
        consumers = self._consumers(self._database.result, database)
        parts = {
            "database": database,
            "broker": broker,
            "producer": producer,
            "consumers": consumers,
        }
        ready = all(part["ok"] for part in parts.values())
        return ready, {"status": "ok" if ready else "degraded", **parts}

    def _part(self, result: ProbeResult | None, now: float) -> dict[str, Any]:
        if result is None:
            return {"ok": False, "age_s": None, "error": "not probed yet"}
        age = now - result.at
        part = {"ok": result.ok, "age_s": round(age, 2), **result.detail}
        if age > self.config.stale_after_s:
            part |= {"ok": False, "error": "probe result too old"}
        return part

    def _consumers(self, result: ProbeResult | None, database: Mapping[str, Any]) -> dict[str, Any]:
        window = self.config.heartbeat_window_s
        if result is None or not database["ok"]:
            return {"ok": False, "window_s": window, "error": "database not ready"}
        now = datetime.now(UTC)
        stages = {
            stage: _stage_report(
                group, [b for b in result.beats if b.group_id == group], now, window
            )
            for stage, group in self.groups.items()
        }
        return {
            "ok": all(stage["alive"] for stage in stages.values()),
            "window_s": window,
            "stages": stages,
        }


def _stage_report(
    group: str, beats: list[Heartbeat], now: datetime, window_s: float
) -> dict[str, Any]:
    """A stage is alive when some member beat within the window; its lag is theirs summed."""
    ages = {beat.member: (now - beat.at).total_seconds() for beat in beats}
    alive = [beat for beat in beats if ages[beat.member] <= window_s]
    lags = [beat.lag for beat in alive if beat.lag is not None]
    return {
        "group": group,
        "alive": bool(alive),
        "last_beat_age_s": round(min(ages.values()), 1) if ages else None,
        "lag": sum(lags) if lags else None,
        "members": [
            {
                "member": beat.member,
                "age_s": round(ages[beat.member], 1),
                "lag": beat.lag,
                "topics": list(beat.topics),
            }
            for beat in alive
        ],
        "silent_members": len(beats) - len(alive),
    }


router = APIRouter(tags=["operations"])


# Async and without I/O: they run on the event loop, so they answer even when every
# worker thread waits on a database or a broker that is away.
@router.get(
    "/healthz",
    responses={503: {"description": "not ready: the JSON says which part is not"}},
)
async def healthz(request: Request) -> JSONResponse:
    """Readiness: database (schema at head, grids), broker (topics and their partitions),
    the gateway's producer, and each consumer stage's liveness and lag.

    200 only when every part is ready, else 503. Read from probes that run in the
    background every few seconds: each part says how old its result is (`age_s`).
    """
    monitor: HealthMonitor = request.app.state.health
    ready, body = monitor.report()
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/livez")
async def livez() -> dict[str, str]:
    """Liveness: the process answers. No dependency is checked."""
    return {"status": "alive"}
