"""Per-process memory of things that are expensive to recompute and safe to reuse for a while.

Neither cache is ever the source of truth for whether an image or a collection exists: the
service reads the record (or re-checks the collection) in the database on every request, so a
delete, update or drop acknowledged by any replica is seen by every other one at once.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, Hashable, TypeVar

V = TypeVar("V")


class ExpiringCache(Generic[V]):
    """At most `max_entries` values, each kept for `lifetime` seconds after it was stored;
    the oldest are evicted first."""

    def __init__(self, lifetime: float, max_entries: int, clock: Callable[[], float] = time.monotonic):
        self.lifetime = lifetime
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()

    def get(self, key: Hashable) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        return value

    def put(self, key: Hashable, value: V) -> None:
        if self.lifetime <= 0:
            return
        self._entries[key] = (self._clock() + self.lifetime, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def discard(self, key: Hashable) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
