"""What each API process keeps of authentication in its memory: token buckets for the
request allowances, and the tokens it validated lately."""

import threading
import time
from collections.abc import Callable, Hashable
from typing import Final

from geodata.accounts import Principal
from grid_service.errors import RateLimited

Clock = Callable[[], float]

_PRUNE_ABOVE: Final = 10_000
"""Entries kept before expired or idle ones are dropped: ~2,400 workers fit many times."""


class TokenBucket:
    """A token bucket: `burst` requests at once, refilled at `rate_per_s`."""

    def __init__(self, rate_per_s: float, burst: float, now: float) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.tokens = burst
        self.updated = now

    def take(self, now: float) -> float:
        """Spend one request; return 0 if allowed, else the seconds until one is."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate_per_s

    def is_full(self, now: float) -> bool:
        """True when the bucket has refilled: keeping it or not makes no difference."""
        return self.tokens + (now - self.updated) * self.rate_per_s >= self.burst


class RateLimiter:
    """One token bucket per key (a credential, a client address), in this process's memory."""

    def __init__(self, rate_per_s: float, burst: float, clock: Clock = time.monotonic) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[Hashable, TokenBucket] = {}

    def take(self, key: Hashable) -> None:
        """Spend one request of `key`'s allowance; raise RateLimited when it is spent."""
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) > _PRUNE_ABOVE:
                    self._buckets = {k: b for k, b in self._buckets.items() if not b.is_full(now)}
                bucket = self._buckets[key] = TokenBucket(self.rate_per_s, self.burst, now)
            wait = bucket.take(now)
        if wait > 0:
            raise RateLimited(wait)


class TokenCache:
    """Validated tokens by hash for `ttl_s` seconds, so most requests skip the database."""

    def __init__(self, ttl_s: float, clock: Clock = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[Principal, float]] = {}

    def get(self, token_hash: str) -> Principal | None:
        """The principal of a token validated less than `ttl_s` ago, else None."""
        with self._lock:
            entry = self._entries.get(token_hash)
            if entry is None:
                return None
            principal, expires = entry
            if self._clock() >= expires:
                del self._entries[token_hash]
                return None
            return principal

    def put(self, token_hash: str, principal: Principal) -> None:
        """Remember a token the database just validated."""
        if self.ttl_s <= 0:
            return
        with self._lock:
            now = self._clock()
            if len(self._entries) > _PRUNE_ABOVE:
                self._entries = {h: e for h, e in self._entries.items() if e[1] > now}
            self._entries[token_hash] = (principal, now + self.ttl_s)
