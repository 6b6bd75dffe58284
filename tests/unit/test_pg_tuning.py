"""The PostgreSQL settings rule (docs/DEPLOY.md), as numbers for three machines."""

import pytest

from wangge.pg_tuning import GB, MB, Resources, in_unit, recommended, show


def _values(memory_kb: int) -> dict[str, str]:
    return {s.name: s.shown() for s in recommended(Resources(memory_kb=memory_kb))}


def test_this_kind_of_machine_24_gib() -> None:
    assert _values(24 * GB) == {
        "shared_buffers": "3GB",
        "effective_cache_size": "12GB",
        "work_mem": "61MB",
        "maintenance_work_mem": "1536MB",
        "max_wal_size": "4GB",
        "checkpoint_timeout": "15min",
    }


def test_a_small_machine_2_gib_keeps_the_floors() -> None:
    assert _values(2 * GB) == {
        "shared_buffers": "256MB",
        "effective_cache_size": "1GB",
        "work_mem": "5MB",
        "maintenance_work_mem": "128MB",
        "max_wal_size": "2GB",
        "checkpoint_timeout": "15min",
    }


def test_a_large_machine_256_gib_is_capped() -> None:
    values = _values(256 * GB)
    assert values["shared_buffers"] == "8GB"
    assert values["work_mem"] == "64MB"
    assert values["maintenance_work_mem"] == "2GB"
    assert values["effective_cache_size"] == "128GB"


def test_memory_values_are_whole_megabytes_for_any_memory() -> None:
    for memory in (1_000_003, 3 * GB + 12_345, 17 * GB + 1):
        for setting in recommended(Resources(memory_kb=memory)):
            if setting.unit == "kB":
                assert setting.value % MB == 0, setting


@pytest.mark.parametrize(
    ("setting", "unit", "wanted", "expected"),
    [
        ("16384", "8kB", "kB", 131072),
        ("4096", "kB", "kB", 4096),
        ("1024", "MB", "kB", 1024 * MB),
        ("300", "s", "s", 300),
        ("5", "min", "s", 300),
        ("200", "ms", "s", 0),
        ("on", None, "kB", None),
        ("300", "s", "kB", None),
    ],
)
def test_pg_settings_rows_in_the_rule_units(
    setting: str, unit: str | None, wanted: str, expected: int | None
) -> None:
    assert in_unit(setting, unit, wanted) == expected  # type: ignore[arg-type]


def test_shown_as_postgresql_prints() -> None:
    assert show(3 * GB, "kB") == "3GB"
    assert show(1536 * MB, "kB") == "1536MB"
    assert show(900, "s") == "15min"
    assert show(45, "s") == "45s"
