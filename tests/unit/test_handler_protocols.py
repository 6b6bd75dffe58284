"""Which optional steps each consumer handler offers the runner, by its Protocol."""

from typing import cast

from event_consumers.batch import Handler, PartitionAwareHandler, TwoStepHandler
from event_consumers.checkins import CheckinHandler
from event_consumers.compliance import ComplianceHandler
from event_consumers.incidents import IncidentHandler
from geodata.contract import Topics
from geodata.db.grid_cache import GridSnapshotCache

# The handlers only keep the cache at construction; none of these tests reads it.
NO_CACHE = cast(GridSnapshotCache, None)


def test_checkins_are_prepared_apart_from_the_write_so_batches_overlap() -> None:
    handler = CheckinHandler(NO_CACHE, Topics())
    assert isinstance(handler, TwoStepHandler)
    assert not isinstance(handler, PartitionAwareHandler)


def test_the_compliance_engine_drops_its_copy_when_partitions_move() -> None:
    handler = ComplianceHandler(NO_CACHE, Topics())
    assert isinstance(handler, PartitionAwareHandler)
    assert not isinstance(handler, TwoStepHandler)


def test_incidents_are_handled_in_one_step() -> None:
    handler: Handler = IncidentHandler(NO_CACHE, Topics())
    assert not isinstance(handler, TwoStepHandler)
    assert not isinstance(handler, PartitionAwareHandler)
