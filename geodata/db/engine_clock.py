"""The compliance engine's event-time clock as the API's "now", for a replayed week.

By default the API answers compliance as of the wall clock. A replay of a past week
(`wangge up --simulate`) makes that wrong: the week is over by the wall clock, so every
worker would be `missed` while the replay is still walking Tuesday. With
WANGGE_COMPLIANCE_CLOCK=engine the API's default `as_of` is instead the compliance engine's
watermark (`compliance_clock`, the latest check-in time it has taken), so the map shows
the week as it stands at the replay's moment, and the memory holds the replayed week as
an open one. Until the engine has a watermark, the wall clock.

The watermark is read in a thread of its own every `interval_s`: "now" is asked on the
event loop of every compliance request, where a query would block.
"""

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from geodata.db.compliance_store import CLOCK_NAME

logger = logging.getLogger(__name__)


def utc_now() -> datetime:
    """The wall clock, aware."""
    return datetime.now(UTC)


def read_watermark(engine: Engine) -> datetime | None:
    """The compliance engine's watermark, None before its first check-in."""
    with engine.connect() as connection:
        value = connection.execute(
            text("SELECT watermark FROM compliance_clock WHERE name = :name"), {"name": CLOCK_NAME}
        ).scalar_one_or_none()
    return value if isinstance(value, datetime) else None


class EngineClock:
    """A clock that reads as the compliance engine's watermark (the wall clock before it
    has one); call it for the time, `start` and `stop` the thread that follows it."""

    def __init__(
        self, engine: Engine, interval_s: float = 0.5, fallback: Callable[[], datetime] = utc_now
    ) -> None:
        """Read every `interval_s` once started."""
        self.engine = engine
        self.interval_s = interval_s
        self._fallback = fallback
        self._watermark: datetime | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def __call__(self) -> datetime:
        """The engine's watermark as last read, else the fallback's time."""
        watermark = self._watermark
        return watermark if watermark is not None else self._fallback()

    def read(self) -> None:
        """Read the watermark now (a failure keeps the last one, logged once per outage)."""
        try:
            self._watermark = read_watermark(self.engine) or self._watermark
        except SQLAlchemyError:
            if not self._failing:
                logger.warning("could not read the compliance engine's clock", exc_info=True)
            self._failing = True
        else:
            self._failing = False

    def start(self) -> None:
        """Read once, then every `interval_s` in a daemon thread until `stop`."""
        self.read()
        self._thread = threading.Thread(target=self._run, name="engine-clock", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following the watermark."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.read()
