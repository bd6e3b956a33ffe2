"""Answers of record reads kept per process, each valid while its image collection's revision
stays what it was when the answer was read: the MongoDB store's read cache on FerretDB.

Why: FerretDB 1.24 pushes no sort, range or `$in` down to its SQLite tables and does not use an
index for `_id` (see benchmarks/RESULTS.md), so a page of 50 reads and decodes every record of
the collection, and even a get by id scans the table. A revision read is one small document of a
tiny collection, much cheaper than either. On MongoDB the indexes answer pages and gets for about
the cost of that read, so there the store does not cache (and does not write revisions).

The protocol, which keeps every replica correct without talking to the others:
- every write of a collection's records, once it succeeded, sets the collection's revision to a
  fresh random value (`changed`), before the write is acknowledged;
- a cached read first reads the revision (a read begun after the caller's call, shared by the
  callers that arrive while one is in flight) and answers from memory only what was read under
  that same value; otherwise it reads the records and keeps the answer under the value it read
  before them.
An answer kept under value v was read after v was set, so it holds every write whose revision
change came before v; any write acknowledged later changed the value after v, and nobody is
answered under v again. Random values, not a counter, because FerretDB runs an update as a read
then a write: two concurrent changes may lose one of the writes, but each leaves a value never
seen before, which is all the argument needs. A collection without a revision document (never
written through a store that writes them) is not cached. Entries also expire after a minute, so
a write whose revision change failed (the write then reports the failure) is not hidden for long,
and at most MAX_RECORDS records are held.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from gateway.caches import SharedReads
from gateway.metadata.mongo_client import unavailable_on_failure, upsert_one

V = TypeVar("V")

ENTRY_LIFETIME_SECONDS = 60.0
# Records held in all entries together (a page holds up to 1,000): some 10-20 MB for records of
# a few kB of properties.
MAX_RECORDS = 10_000


class RevisionCache:
    def __init__(self, revisions: Any, *, lifetime: float = ENTRY_LIFETIME_SECONDS, max_records: int = MAX_RECORDS,
                 clock: Callable[[], float] = time.monotonic):
        """`revisions`: the MongoDB collection of one document per image collection,
        `{_id: name, revision: value}`."""
        self._revisions = revisions
        self._lifetime = lifetime
        self._max = max_records
        self._held = 0
        self._clock = clock
        # (revision, expiry, value, records in the value), least recently used first.
        self._entries: OrderedDict[Hashable, tuple[str, float, Any, int]] = OrderedDict()
        self._current = SharedReads(self._read_revision)
        # A change need only begin after the write it marks: concurrent writers share one.
        self._changes = SharedReads(self._write_revision)
        self._loading: dict[tuple[Hashable, str], asyncio.Future[Any]] = {}
        self.hits = 0
        self.misses = 0
        self.shared = 0

    async def _read_revision(self, collection: str) -> str | None:
        with unavailable_on_failure():
            doc = await self._revisions.find_one({"_id": collection})
        return None if doc is None else str(doc["revision"])

    async def read(self, collection: str, key: Hashable, load: Callable[[], Awaitable[V]]) -> V:
        """What `load()` answers, from memory when it was read under the collection's current
        revision. `key` names the read within the collection."""
        revision = await self._current.get(collection)
        if revision is None:
            return await load()
        entry_key = (collection, key)
        entry = self._entries.get(entry_key)
        if entry is not None and entry[0] == revision and self._clock() < entry[1]:
            self._entries.move_to_end(entry_key)
            self.hits += 1
            return entry[2]
        # One load per key and revision: concurrent readers of a page nobody holds yet (the
        # first reads after a write) share it instead of each scanning the collection. It runs
        # as a task of its own, so one reader going away does not cancel it for the others.
        flight = (entry_key, revision)
        task = self._loading.get(flight)
        if task is None:
            self.misses += 1
            task = asyncio.ensure_future(self._load(entry_key, revision, load))
            self._loading[flight] = task
            task.add_done_callback(lambda done: self._landed(flight, done))
        else:
            self.shared += 1
        value: V = await asyncio.shield(task)
        return value

    async def _load(self, entry_key: Hashable, revision: str, load: Callable[[], Awaitable[V]]) -> V:
        value = await load()
        weight = len(value) if isinstance(value, list) else 1
        replaced = self._entries.pop(entry_key, None)
        if replaced is not None:
            self._held -= replaced[3]
        self._entries[entry_key] = (revision, self._clock() + self._lifetime, value, weight)
        self._held += weight
        while self._held > self._max and self._entries:
            self._held -= self._entries.popitem(last=False)[1][3]
        return value

    def _landed(self, flight: tuple[Hashable, str], done: asyncio.Future[Any]) -> None:
        self._loading.pop(flight, None)
        if not done.cancelled():
            done.exception()  # retrieved: no "never retrieved" warning when every reader left

    async def changed(self, collection: str) -> None:
        """Mark the collection's records as written: call after every successful write of them,
        before it is acknowledged."""
        await self._changes.get(collection)

    async def _write_revision(self, collection: str) -> None:
        with unavailable_on_failure():
            await upsert_one(self._revisions, {"_id": collection}, {"$set": {"revision": secrets.token_hex(8)}})

    def __len__(self) -> int:
        return len(self._entries)
