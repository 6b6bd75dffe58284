"""Patrol compliance (docs/PATROL_RULE.md) as pure functions over plain data.

No database, broker or web framework: the compliance consumer, the API and the tests
all call `evaluate_week` on check-in records and assignment periods, and `report` rolls
the statuses of a week up to grids and areas.
"""

from geodata.compliance.config import ComplianceConfig
from geodata.compliance.patrols import (
    CheckinRecord,
    CountReason,
    InvalidReason,
    Patrol,
    PresenceFlag,
    build_patrols,
    is_usable,
    presence_flag,
    unique_checkins,
    valid_at,
)
from geodata.compliance.weekly import (
    ComplianceKey,
    StatusChange,
    WeekResult,
    checkin_window,
    days_assigned,
    evaluate_week,
    is_week_final,
    remaining_capacity,
    required_patrols,
    status_as_of,
    status_changes,
    weeks_reading,
)
from geodata.compliance.weeks import IsoWeek, day_start, local_date

__all__ = [
    "CheckinRecord",
    "ComplianceConfig",
    "ComplianceKey",
    "CountReason",
    "InvalidReason",
    "IsoWeek",
    "Patrol",
    "PresenceFlag",
    "StatusChange",
    "WeekResult",
    "build_patrols",
    "checkin_window",
    "day_start",
    "days_assigned",
    "evaluate_week",
    "is_usable",
    "is_week_final",
    "local_date",
    "presence_flag",
    "remaining_capacity",
    "required_patrols",
    "status_as_of",
    "status_changes",
    "unique_checkins",
    "valid_at",
    "weeks_reading",
]
