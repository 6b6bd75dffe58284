"""The tunable numbers of the patrol rule (docs/PATROL_RULE.md), with its defaults."""

from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class ComplianceConfig:
    """Every setting of docs/PATROL_RULE.md; built at the edge and passed down."""

    timezone: str = "Asia/Shanghai"
    max_accuracy_m: float = 100.0
    patrol_gap: timedelta = timedelta(minutes=30)
    min_checkins: int = 3
    min_duration: timedelta = timedelta(minutes=10)
    max_counted_per_day: int = 1
    weekly_required: int = 3
    allowed_lateness: timedelta = timedelta(hours=48)
    refuse_mocked: bool = True
    """A fix the phone says is mocked is no proof of presence."""
    refuse_implausible_speed: bool = True
    """A fix the intake flagged `implausible_speed` is no proof of presence."""

    def __post_init__(self) -> None:
        # Fail at start-up on a bad setting rather than computing nonsense statuses later.
        ZoneInfo(self.timezone)
        if self.max_accuracy_m < 0:
            raise ValueError("max_accuracy_m must be >= 0")
        for name in ("patrol_gap", "min_duration", "allowed_lateness"):
            if getattr(self, name) < timedelta(0):
                raise ValueError(f"{name} must not be negative")
        if self.min_checkins < 1:
            raise ValueError("min_checkins must be >= 1")
        if self.max_counted_per_day < 1:
            raise ValueError("max_counted_per_day must be >= 1")
        if self.weekly_required < 0:
            raise ValueError("weekly_required must be >= 0")

    @property
    def tz(self) -> ZoneInfo:
        """The local time zone that days and weeks are cut in."""
        return ZoneInfo(self.timezone)

    @property
    def patrol_horizon(self) -> timedelta:
        """How long after its first check-in a patrol's validity is always settled.

        The `min_checkins`-th check-in of a patrol comes at most (min_checkins - 1) gaps
        after its first; the first check-in at or past `min_duration` comes less than one
        gap after that mark. Check-ins later than this extend a patrol but cannot change
        whether it is valid, so a week's evaluation can stop reading there.
        """
        return max((self.min_checkins - 1) * self.patrol_gap, self.min_duration + self.patrol_gap)
