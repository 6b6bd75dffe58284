"""Wiring of the consumers: which handlers a `wangge consume` process runs."""

import logging
from collections.abc import Sequence

from sqlalchemy import Engine

from event_consumers.boundaries import BoundaryCache
from event_consumers.checkins import CheckinHandler
from event_consumers.compliance import ComplianceHandler
from event_consumers.incidents import IncidentHandler
from event_consumers.outbox import OutboxPublisher, OutboxPublisherThread
from event_consumers.runner import ConsumerRunner, Handler, RunnerConfig
from geodata.contract import Topics

logger = logging.getLogger(__name__)

CONSUMER_NAMES = ("checkins", "incidents", "compliance")


def build_handlers(engine: Engine, names: Sequence[str], topics: Topics) -> list[Handler]:
    """The handlers for the named consumers, sharing one boundary cache."""
    unknown = set(names) - set(CONSUMER_NAMES)
    if unknown:
        raise ValueError(f"unknown consumer(s) {sorted(unknown)}; choose from {CONSUMER_NAMES}")
    boundaries = BoundaryCache(engine)
    handlers: list[Handler] = []
    if "checkins" in names:
        handlers.append(CheckinHandler(boundaries, topics))
    if "incidents" in names:
        handlers.append(IncidentHandler(boundaries, topics))
    if "compliance" in names:
        handlers.append(ComplianceHandler(boundaries, topics))
    return handlers


def run_consumers(
    config: RunnerConfig,
    engine: Engine,
    topics: Topics,
    names: Sequence[str] = CONSUMER_NAMES,
    idle_exit_after_s: float | None = None,
) -> None:
    """Run one consumer-group member until SIGTERM/SIGINT (or idle, for batch jobs)."""
    runner = ConsumerRunner(config, build_handlers(engine, names, topics))
    runner.install_signal_handlers()
    publisher = None
    if "compliance" in names:
        publisher = OutboxPublisherThread(
            OutboxPublisher(config.database_url, config.bootstrap, topics.compliance)
        )
        publisher.start()
    logger.info("consuming %s as group %s", ", ".join(names), config.group_id)
    try:
        runner.run(idle_exit_after_s=idle_exit_after_s)
    finally:
        if publisher is not None:
            publisher.stop()
