"""The patrol rule's settings: today's rule by default, every parameter settable."""

import pickle
from datetime import timedelta

import pytest
from pydantic import ValidationError

from geodata.compliance import ComplianceConfig
from wangge.settings import PatrolSettings

SETTINGS = {
    "WANGGE_PATROL_WEEKLY_REQUIRED": "4",
    "WANGGE_PATROL_MIN_CHECKINS": "5",
    "WANGGE_PATROL_MIN_DURATION_MINUTES": "15",
    "WANGGE_PATROL_GAP_MINUTES": "20.5",
    "WANGGE_PATROL_MAX_ACCURACY_M": "50",
    "WANGGE_PATROL_MAX_COUNTED_PER_DAY": "2",
    "WANGGE_PATROL_ALLOWED_LATENESS_HOURS": "72",
    "WANGGE_PATROL_TIMEZONE": "Asia/Urumqi",
    "WANGGE_PATROL_REFUSE_MOCKED": "false",
    "WANGGE_PATROL_REFUSE_IMPLAUSIBLE_SPEED": "false",
}


@pytest.fixture(autouse=True)
def _no_patrol_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither the caller's environment nor a .env in the working directory leaks in."""
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(PatrolSettings.model_config, "env_file", None)


def test_without_settings_the_rule_is_todays() -> None:
    assert PatrolSettings().compliance_config() == ComplianceConfig()


def test_every_parameter_of_the_rule_comes_from_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in SETTINGS.items():
        monkeypatch.setenv(name, value)

    assert PatrolSettings().compliance_config() == ComplianceConfig(
        timezone="Asia/Urumqi",
        max_accuracy_m=50.0,
        patrol_gap=timedelta(minutes=20, seconds=30),
        min_checkins=5,
        min_duration=timedelta(minutes=15),
        max_counted_per_day=2,
        weekly_required=4,
        allowed_lateness=timedelta(hours=72),
        refuse_mocked=False,
        refuse_implausible_speed=False,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WANGGE_PATROL_TIMEZONE", "Nowhere/Atlantis"),
        ("WANGGE_PATROL_TIMEZONE", "../etc/passwd"),
        ("WANGGE_PATROL_MIN_CHECKINS", "0"),
        ("WANGGE_PATROL_MAX_COUNTED_PER_DAY", "0"),
        ("WANGGE_PATROL_GAP_MINUTES", "-1"),
        ("WANGGE_PATROL_WEEKLY_REQUIRED", "three"),
    ],
)
def test_a_setting_the_rule_cannot_use_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)

    with pytest.raises(ValidationError, match=name.removeprefix("WANGGE_").lower()):
        PatrolSettings()


def test_the_compliance_stage_gets_the_rule_its_runner_config_carries() -> None:
    from sqlalchemy import create_engine

    from event_consumers.app import build_handlers
    from event_consumers.compliance import ComplianceHandler
    from event_consumers.runner import RunnerConfig
    from geodata.contract import Topics

    rule = ComplianceConfig(weekly_required=5, patrol_gap=timedelta(minutes=20))
    # The compliance stage runs in a spawned process: its config crosses as a pickle.
    config = pickle.loads(pickle.dumps(RunnerConfig("b:9092", "", compliance=rule)))
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none")  # never connects

    [handler] = build_handlers(
        engine, ["compliance"], Topics(), config.event_limits, config.compliance
    )

    assert isinstance(handler, ComplianceHandler)
    assert handler.config == rule
