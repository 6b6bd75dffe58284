"""The compliance engine's read-through copy of the check-ins it re-evaluates.

Each batch rebuilds the patrols of every (worker, grid, week) it touches from all of that
key's check-ins; reading them back from PostgreSQL was a fifth of the engine's time at
1,000 events/s. This keeps, per key, exactly what `compliance_store.load_checkins` would
return (on-time check-ins in the week's reading window) and adds each batch's new ones.

It is only a copy: PostgreSQL stays the state. It is right only while this member owns
the key's partition and every batch that touched it committed, so the engine clears it
when a batch is rolled back and whenever partitions change hands (another member may
have folded check-ins of these keys in meanwhile).
"""

from collections import OrderedDict
from collections.abc import Iterable

from geodata.compliance import CheckinRecord, ComplianceKey


class CheckinCache:
    """Check-ins per key, least recently used evicted beyond `max_checkins` in all."""

    def __init__(self, max_checkins: int = 1_000_000) -> None:
        self.max_checkins = max_checkins
        self._by_key: OrderedDict[ComplianceKey, list[CheckinRecord]] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def get(self, key: ComplianceKey) -> list[CheckinRecord] | None:
        """The key's check-ins (a copy), or None when they are not held."""
        records = self._by_key.get(key)
        if records is None:
            return None
        self._by_key.move_to_end(key)
        return list(records)

    def put(self, key: ComplianceKey, records: Iterable[CheckinRecord]) -> None:
        """Hold all of a key's check-ins, as just read from the database."""
        self.discard(key)
        held = list(records)
        self._by_key[key] = held
        self._size += len(held)
        while self._size > self.max_checkins and len(self._by_key) > 1:
            _, evicted = self._by_key.popitem(last=False)
            self._size -= len(evicted)

    def add(self, key: ComplianceKey, records: Iterable[CheckinRecord]) -> None:
        """Append newly stored check-ins to a key that is held (no-op otherwise)."""
        held = self._by_key.get(key)
        if held is None:
            return
        before = len(held)
        held.extend(records)
        self._size += len(held) - before

    def discard(self, key: ComplianceKey) -> None:
        """Forget one key (e.g. its week is final and will not be evaluated again)."""
        held = self._by_key.pop(key, None)
        if held is not None:
            self._size -= len(held)

    def held_keys(self) -> list[ComplianceKey]:
        """The keys held, least recently used first."""
        return list(self._by_key)

    def clear(self) -> None:
        """Forget everything."""
        self._by_key.clear()
        self._size = 0
