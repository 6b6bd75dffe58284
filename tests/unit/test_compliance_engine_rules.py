"""The engine's own small rules: which weeks a check-in touches, when a patrol became valid."""

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from geodata.compliance import (
    CheckinRecord,
    ComplianceConfig,
    IsoWeek,
    build_patrols,
    valid_at,
    weeks_reading,
)

TZ = ZoneInfo("Asia/Shanghai")
CONFIG = ComplianceConfig()
MONDAY = datetime(2020, 9, 7, tzinfo=TZ)  # 2020-W37


def _fix(t: datetime) -> CheckinRecord:
    return CheckinRecord(uuid.uuid4(), "W00001", "610302001001001", t, 5.0)


def test_a_midweek_checkin_touches_only_its_own_week() -> None:
    assert weeks_reading(MONDAY + timedelta(days=3), CONFIG) == [IsoWeek(2020, 37)]


def test_a_checkin_just_after_monday_midnight_also_touches_the_previous_week() -> None:
    weeks = weeks_reading(MONDAY + timedelta(minutes=20), CONFIG)
    assert weeks == [IsoWeek(2020, 36), IsoWeek(2020, 37)]


def test_a_checkin_just_before_monday_midnight_also_touches_the_next_week() -> None:
    weeks = weeks_reading(MONDAY - timedelta(minutes=10), CONFIG)
    assert weeks == [IsoWeek(2020, 36), IsoWeek(2020, 37)]


def test_a_patrol_becomes_valid_at_the_fix_that_meets_both_thresholds() -> None:
    fixes = [_fix(MONDAY + timedelta(minutes=m)) for m in (0, 2, 4, 9, 11, 15)]
    (patrol,) = build_patrols(fixes, CONFIG)
    # Three fixes by minute 4, but ten minutes only at minute 11.
    assert valid_at(patrol, fixes, CONFIG) == MONDAY + timedelta(minutes=11)


def test_an_invalid_patrol_never_becomes_valid() -> None:
    fixes = [_fix(MONDAY + timedelta(minutes=m)) for m in (0, 5)]
    (patrol,) = build_patrols(fixes, CONFIG)
    assert valid_at(patrol, fixes, CONFIG) is None
