"""Wiring of the consumers: which handlers a `wangge consume` process runs.

The consumers form two stages. The *intake* stage (check-ins, incidents) reads what
phones and other systems post and republishes assignments; the *compliance* stage reads
those assignments. Each stage is its own consumer group (the compliance stage's is the
group's name + `.compliance`), because the two read different topics at their own pace.
When one `wangge consume` runs both, the compliance stage gets a child process of its
own: sharing one writer thread, a check-in waited for two full batches of both stages
before its status moved, and on two cores the stages overlap instead.
"""

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace

from sqlalchemy import Engine

from event_consumers.batch import Handler
from event_consumers.checkins import CheckinHandler
from event_consumers.collector import tune_for_a_long_lived_heap
from event_consumers.compliance import ComplianceHandler
from event_consumers.coverage import CoverageRecorder
from event_consumers.deadlines import DeadlineEngine, DeadlineEngineThread, EventTimeClock
from event_consumers.incidents import IncidentHandler
from event_consumers.lockers import LockerHandler
from event_consumers.logs import COMPLIANCE_PROCESS, INTAKE_PROCESS, LOG_FORMAT
from event_consumers.outbox import (
    COMPLIANCE_OUTBOX,
    INCIDENT_STATUS_OUTBOX,
    Outbox,
    OutboxPublisher,
    OutboxPublisherThread,
)
from event_consumers.runner import ConsumerRunner, RunnerConfig
from geodata.compliance import ComplianceConfig
from geodata.contract import Topics
from geodata.coverage import CoverageConfig
from geodata.db.engine import create_db_engine
from geodata.db.grid_cache import GridSnapshotCache
from geodata.duplicates import DuplicateRule
from geodata.events import DEFAULT_TIME_LIMITS, EventTimeLimits
from geodata.snapshot_policy import SnapshotPolicy

logger = logging.getLogger(__name__)

INTAKE_STAGE = ("checkins", "incidents", "lockers")
COMPLIANCE_STAGE = ("compliance",)
CONSUMER_NAMES = (*INTAKE_STAGE, *COMPLIANCE_STAGE)
COMPLIANCE_GROUP_SUFFIX = ".compliance"
#: How long a stage whose parent died may take to finish its batch before it exits.
PARENT_GONE_GRACE_S = 3.0


def _published_outboxes(topics: Topics) -> tuple[tuple[str, str, Outbox], ...]:
    """Which consumer's process publishes which outbox, to which topic.

    Each outbox is published by the process of the consumer that writes to it: the
    compliance stage's, and the incident consumer's (the intake stage), which files every
    report as its first change. The API's transitions go to the same outbox; its processes
    serve requests and may be many, while the intake stage runs wherever incidents are
    filed at all, and its NOTIFY-driven publisher wakes for a PATCH as for a report. The
    advisory lock keeps one publisher per outbox however many processes run.
    """
    return (
        ("compliance", topics.compliance, COMPLIANCE_OUTBOX),
        ("incidents", topics.incident_status, INCIDENT_STATUS_OUTBOX),
    )


def stage_group_id(group_id: str, names: Sequence[str]) -> str:
    """The consumer group of a stage: the compliance stage's own, or the group itself."""
    if set(names) <= set(COMPLIANCE_STAGE):
        return group_id + COMPLIANCE_GROUP_SUFFIX
    return group_id


def _check_names(names: Sequence[str]) -> None:
    unknown = set(names) - set(CONSUMER_NAMES)
    if unknown:
        raise ValueError(f"unknown consumer(s) {sorted(unknown)}; choose from {CONSUMER_NAMES}")


def build_handlers(
    engine: Engine,
    names: Sequence[str],
    topics: Topics,
    limits: EventTimeLimits = DEFAULT_TIME_LIMITS,
    compliance: ComplianceConfig | None = None,
    snapshot: SnapshotPolicy | None = None,
    duplicates: DuplicateRule | None = None,
    coverage: CoverageConfig | None = None,
) -> list[Handler]:
    """The handlers for the named consumers of one stage, sharing one grid snapshot."""
    _check_names(names)
    # The compliance stage takes the whole snapshot though it reads only the staff: its
    # check reads no geometry, and a reload (some 0.2 s and 4 MB for the reference city,
    # only when grids or staff change) is not worth a second way of loading.
    grids = GridSnapshotCache(engine, snapshot)
    handlers: list[Handler] = []
    if "checkins" in names:
        recorder = CoverageRecorder(coverage)
        handlers.append(CheckinHandler(grids, topics, limits=limits, coverage=recorder))
    if "incidents" in names:
        handlers.append(IncidentHandler(grids, topics, limits=limits, duplicates=duplicates))
    if "lockers" in names:
        # A drop-off becomes an incident report, which the incidents consumer files.
        handlers.append(LockerHandler(topics, limits=limits))
    if "compliance" in names:
        handlers.append(ComplianceHandler(grids, topics, config=compliance))
    return handlers


def run_consumers(
    config: RunnerConfig,
    engine: Engine,
    topics: Topics,
    names: Sequence[str] = CONSUMER_NAMES,
    idle_exit_after_s: float | None = None,
) -> None:
    """Run the named consumers until SIGTERM/SIGINT (or idle, for batch jobs).

    `config.group_id` is the intake stage's group; the compliance stage derives its own.
    """
    _check_names(names)
    intake = [name for name in INTAKE_STAGE if name in names]
    compliance = [name for name in COMPLIANCE_STAGE if name in names]
    multiprocessing.current_process().name = INTAKE_PROCESS if intake else COMPLIANCE_PROCESS
    if not intake or not compliance:
        _run_stage(config, engine, topics, intake or compliance, idle_exit_after_s)
        return
    child = multiprocessing.get_context("spawn").Process(
        target=_run_stage_process,
        args=(
            config,
            engine.url.render_as_string(hide_password=False),
            topics,
            compliance,
            idle_exit_after_s,
            _logger_levels(),
        ),
        name=COMPLIANCE_PROCESS,
    )
    child.start()
    logger.info("compliance stage started in process %s", child.pid)
    _run_stage(config, engine, topics, intake, idle_exit_after_s, partner=child)


def _run_stage(
    config: RunnerConfig,
    engine: Engine,
    topics: Topics,
    names: Sequence[str],
    idle_exit_after_s: float | None,
    partner: multiprocessing.process.BaseProcess | None = None,
) -> None:
    """One stage's consumer-group member in this process; with `partner`, stop together."""
    config = replace(
        config,
        group_id=stage_group_id(config.group_id, names),
        stage="compliance" if set(names) <= set(COMPLIANCE_STAGE) else "intake",
    )
    runner = ConsumerRunner(
        config,
        build_handlers(
            engine,
            names,
            topics,
            config.event_limits,
            config.compliance,
            config.grid_snapshot,
            config.duplicates,
            config.coverage,
        ),
        deadletter_topic=topics.deadletter,
        output_topics=topics.all(),
    )
    runner.install_signal_handlers()
    publishers = [
        OutboxPublisherThread(OutboxPublisher(config.database_url, config.bootstrap, topic, outbox))
        for stage_member, topic, outbox in _published_outboxes(topics)
        if stage_member in names
    ]
    for publisher in publishers:
        publisher.start()
    # The deadlines run beside the filing of incidents: their clock is its event time.
    deadlines = (
        [DeadlineEngineThread(DeadlineEngine(config.database_url, EventTimeClock()))]
        if "incidents" in names
        else []
    )
    for engine_thread in deadlines:
        engine_thread.start()
    partner_died = threading.Event()
    if partner is not None:
        _stop_when_gone(partner, runner, partner_died)
    parent = multiprocessing.parent_process()
    if parent is not None:
        # A SIGKILLed parent must not leave an orphan stage consuming on its own.
        _stop_when_gone(parent, runner, threading.Event(), exit_after_s=PARENT_GONE_GRACE_S)
    logger.info("consuming %s as group %s", ", ".join(names), config.group_id)
    crashed = False
    try:
        runner.run(idle_exit_after_s=idle_exit_after_s)
    except BaseException:
        crashed = True
        logger.exception("the %s stage stopped on an error", config.stage)
        raise
    finally:
        _stop_together([*publishers, *deadlines])
        if partner is not None:
            _stop_partner(partner, asked_to_stop=runner.stopping or crashed, drain=runner.draining)
    if partner is not None and partner_died.is_set():
        raise RuntimeError(f"the compliance stage exited with code {partner.exitcode}")


def _stop_together(threads: Sequence[OutboxPublisherThread | DeadlineEngineThread]) -> None:
    """Stop the stage's background threads at once: each may wait a second for its turn
    to end, and one after another those seconds added up on every stop."""
    stoppers = [
        threading.Thread(target=thread.stop, name=f"stop-{thread.name}") for thread in threads
    ]
    for stopper in stoppers:
        stopper.start()
    for stopper in stoppers:
        stopper.join()


def _stop_when_gone(
    process: multiprocessing.process.BaseProcess,
    runner: ConsumerRunner,
    gone: threading.Event,
    exit_after_s: float | None = None,
) -> None:
    """Stop the runner (finishing its batch) when `process` ends before we were asked to.

    With `exit_after_s`, the process exits by itself if the runner has not stopped by then
    (it may be waiting on a database or broker that went away with the parent); rows and
    offsets commit together, so an exit in the middle of a batch loses nothing.
    """

    def watch() -> None:
        multiprocessing.connection.wait([process.sentinel])
        if runner.stopping:
            return
        gone.set()
        logger.warning("process %s is gone: stopping", process.pid)
        runner.request_stop()
        if exit_after_s is not None:
            time.sleep(exit_after_s)
            logger.warning(
                "not stopped %.0f s after process %s went: exiting", exit_after_s, process.pid
            )
            os._exit(1)

    threading.Thread(target=watch, name="wangge-stage-watch", daemon=True).start()


def _stop_partner(
    partner: multiprocessing.process.BaseProcess, *, asked_to_stop: bool, drain: bool = False
) -> None:
    """Stop the other stage: drained after ours (SIGUSR1) when we drained, SIGTERM when we
    were asked to stop, else let it go idle too."""
    if not asked_to_stop and not drain:
        partner.join()  # idle-exit: it goes idle and exits on its own
        return
    if partner.is_alive() and partner.pid is not None:
        os.kill(partner.pid, signal.SIGUSR1 if drain else signal.SIGTERM)
    partner.join(timeout=60)
    if partner.is_alive():
        logger.warning("the compliance stage did not stop in 60 s; killing it")
        partner.kill()
        partner.join()


def _logger_levels() -> dict[str, int]:
    """The levels set on named loggers in this process (a library's quieted, say)."""
    return {
        name: logger.level
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET
    }


def _run_stage_process(
    config: RunnerConfig,
    engine_url: str,
    topics: Topics,
    names: Sequence[str],
    idle_exit_after_s: float | None,
    logger_levels: Mapping[str, int],
) -> None:
    """Entry point of a stage's child process (spawned: nothing is inherited but args,
    so the parent's logger levels come as one)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    for name, level in logger_levels.items():
        logging.getLogger(name).setLevel(level)
    tune_for_a_long_lived_heap()
    engine = create_db_engine(engine_url)
    try:
        _run_stage(config, engine, topics, names, idle_exit_after_s)
    finally:
        engine.dispose()
