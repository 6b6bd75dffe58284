"""PostgreSQL's memory and WAL settings for the machine it runs on: the rule, as plain data.

The rule (docs/DEPLOY.md, "PostgreSQL settings") assumes what `wangge up` makes of one
machine: PostgreSQL shares it with the broker, the consumers and the API, and the
operating system's page cache does most of the caching. Values are whole kB or seconds,
the units `pg_settings` can be compared in without parsing PostgreSQL's own spellings.
"""

import os
from dataclasses import dataclass
from typing import Final, Literal

KB: Final = 1
MB: Final = 1024 * KB
GB: Final = 1024 * MB

Unit = Literal["kB", "s"]

ASSUMED_MAX_CONNECTIONS: Final = 100
"""PostgreSQL's default, which `wangge` keeps: the API's pool is 16, a consumer's 2."""


@dataclass(frozen=True)
class Resources:
    """What the rule is computed from: the machine's memory."""

    memory_kb: int


@dataclass(frozen=True)
class Setting:
    """One setting's recommended value, in its unit, and the reason in a few words."""

    name: str
    value: int
    unit: Unit
    why: str

    @property
    def sql_value(self) -> str:
        """The value as `ALTER SYSTEM SET` takes it, e.g. `3145728kB` or `900s`."""
        return f"{self.value}{self.unit}"

    def shown(self) -> str:
        """The value for people: `3GB`, `64MB`, `15min`."""
        return show(self.value, self.unit)


def show(value: int, unit: Unit) -> str:
    """A kB or seconds value in the largest unit that divides it, as PostgreSQL prints."""
    if unit == "s":
        return f"{value // 60}min" if value % 60 == 0 else f"{value}s"
    for size, name in ((GB, "GB"), (MB, "MB")):
        if value % size == 0:
            return f"{value // size}{name}"
    return f"{value}kB"


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _round_mb(value_kb: int) -> int:
    return value_kb // MB * MB


def recommended(resources: Resources) -> tuple[Setting, ...]:
    """The settings for a machine of `resources` (the rule in docs/DEPLOY.md)."""
    memory = resources.memory_kb
    shared_buffers = _round_mb(_clamp(memory // 8, 128 * MB, 8 * GB))
    return (
        Setting(
            "shared_buffers",
            shared_buffers,
            "kB",
            "1/8 of memory (128 MB - 8 GB): the host also runs the broker, consumers and API",
        ),
        Setting(
            "effective_cache_size",
            _round_mb(memory // 2),
            "kB",
            "1/2 of memory: what PostgreSQL may expect the OS to cache",
        ),
        Setting(
            "work_mem",
            _round_mb(_clamp(memory // 4 // ASSUMED_MAX_CONNECTIONS, 4 * MB, 64 * MB)),
            "kB",
            "1/4 of memory over 100 connections (4 - 64 MB): sorts of a week's check-ins",
        ),
        Setting(
            "maintenance_work_mem",
            _round_mb(_clamp(memory // 16, 64 * MB, 2 * GB)),
            "kB",
            "1/16 of memory (64 MB - 2 GB): index builds after an import",
        ),
        Setting(
            "max_wal_size",
            4 * GB if memory >= 8 * GB else 2 * GB,
            "kB",
            "intake writes steadily: fewer, larger checkpoints",
        ),
        Setting(
            "checkpoint_timeout",
            15 * 60,
            "s",
            "15 min: a checkpoint by time rather than by WAL volume under steady intake",
        ),
    )


AUTOVACUUM_ADVICE: Final = (
    "autovacuum is off: turn it on (PostgreSQL's default). Without it the patrol days the"
    " compliance stage rewrites leave dead rows behind, and statements the consumers"
    " prepared while a table was small keep their plans as it grows"
)
"""Advised, never set, even on a local cluster: off is someone's explicit choice (the
default is on), where the memory settings above are defaults that do not fit the machine."""


def this_machine() -> Resources:
    """The memory of the machine this process runs on."""
    memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return Resources(memory_kb=memory_bytes // 1024)


_UNIT_KB: Final = {"8kB": 8, "kB": 1, "MB": MB, "GB": GB}
_UNIT_S: Final = {"ms": None, "s": 1, "min": 60, "h": 3600}


def in_unit(setting: str, unit: str | None, wanted: Unit) -> int | None:
    """A `pg_settings` row's `setting` and `unit` as kB or seconds; None if not comparable."""
    if unit is None:
        return None
    value = int(float(setting))
    if wanted == "kB" and unit in _UNIT_KB:
        return value * _UNIT_KB[unit]
    if wanted == "s" and unit == "ms":
        return value // 1000
    scale = _UNIT_S.get(unit)
    if wanted == "s" and scale is not None:
        return value * scale
    return None
