"""Per-process memory of things that are expensive to recompute and safe to reuse for a while,
and reads shared by concurrent callers: used by the service and by the MongoDB store on FerretDB
(`metadata.mongo_reads`), so it sits below both.

Nothing here is ever the source of truth for whether an image or a collection exists: the
service reads the record (or re-checks the collection) in the database on every request, so a
delete, update or drop acknowledged by any replica is seen by every other one at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
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


K = TypeVar("K", bound=Hashable)


class SharedReads(Generic[K, V]):
    """Reads of `read(key)` that each caller needs begun after its own call: a caller arriving
    while a read of its key is in flight waits for the next one, which starts when that one ends
    and serves everyone who arrived meanwhile. Under concurrency, many callers share one read,
    and every answer is as fresh as a read of one's own. Errors reach every caller of that read.

    A caller that finds no read of its key in flight reads inline, in its own task: the common
    uncontended case costs what a plain read does, with no task or future of its own."""

    def __init__(self, read: Callable[[K], Awaitable[V]]):
        self._read = read
        self._waiting: dict[K, asyncio.Future[V]] = {}
        self._running: set[K] = set()

    async def get(self, key: K) -> V:
        if key not in self._running:
            self._running.add(key)
            try:
                return await self._read(key)
            finally:
                self._finished(key)
        future = self._waiting.get(key)
        if future is None:
            future = self._waiting[key] = asyncio.get_running_loop().create_future()
        # Shielded: one caller going away must not cancel the read the others wait for.
        return await asyncio.shield(future)

    def _finished(self, key: K) -> None:
        self._running.discard(key)
        if key in self._waiting:
            self._start(key)

    def _start(self, key: K) -> None:
        future = self._waiting.pop(key)
        self._running.add(key)
        task = asyncio.ensure_future(self._read(key))

        def finished(done: asyncio.Future[V]) -> None:
            if done.cancelled():
                future.cancel()
            elif (error := done.exception()) is not None:
                future.set_exception(error)
            else:
                future.set_result(done.result())
            if not future.cancelled() and future.exception() is not None:
                future.exception()  # retrieved: no "never retrieved" warning when all left
            self._finished(key)

        task.add_done_callback(finished)
