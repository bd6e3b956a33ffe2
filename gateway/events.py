"""Live events (`upload`, `update`, `delete`) delivered to WebSocket subscribers on every replica.

Every replica appends what its service did to one shared, append-only event log in the metadata
database, numbered by a sequence that only grows; each replica's `EventHub` follows that log and
fans the events out to its own subscribers. Following means a change stream where the database
offers one (a MongoDB replica set), else polling `seq > last` every `poll_interval_seconds`:
FerretDB v1 does not implement `$changeStream`, and SQLite shared by several processes on one
host has no notification at all. The service never sees any of this: it calls its listeners.

MongoDB hands out sequence numbers before the insert, so two writers may commit 6 before 5. The
poller therefore delivers everything new but advances its mark only over contiguous numbers, and
gives up on a hole after `GAP_GRACE_SECONDS` (a writer that died between the two steps).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

from gateway.config import Config
from gateway.metadata.base import ImageRecord
from gateway.metadata.sqlite_thread import SqliteThread, connect

log = logging.getLogger(__name__)

KINDS = ("upload", "update", "delete")
GAP_GRACE_SECONDS = 5.0
_BATCH = 500
_TRIM_EVERY = 256
_QUEUE_SIZE = 256


@dataclass(frozen=True)
class Event:
    seq: int
    kind: str
    record: ImageRecord


class EventLog(Protocol):
    async def append_many(self, entries: list[tuple[str, ImageRecord]]) -> None:
        """Add events in one go, numbered in the order given."""

    async def append(self, kind: str, record: ImageRecord) -> int:
        """Add an event; its sequence number."""

    async def latest(self) -> int:
        """The highest sequence number written so far (0 when none)."""

    async def read_after(self, seq: int, limit: int) -> list[Event]:
        """Events with a sequence number above `seq`, in order."""

    def follow(self) -> AsyncIterator[Event] | None:
        """A push feed of new events, or None when the database offers none."""


class SqliteEventLog(SqliteThread):
    """The event table in its own SQLite file next to the metadata database; processes sharing
    the data directory share it (WAL lets readers poll while one writer appends)."""

    _thread_name = "events"

    def __init__(self, path: Path, retention: timedelta):
        super().__init__(path)
        self._retention = retention

    def _open(self) -> None:
        db = connect(self._path)
        db.execute(
            "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL,"
            " kind TEXT NOT NULL, record TEXT NOT NULL)"
        )
        self._db = db

    async def append(self, kind: str, record: ImageRecord) -> int:
        def append() -> int:
            assert self._db is not None
            now = datetime.now(timezone.utc)
            cursor = self._db.execute(
                "INSERT INTO events (time, kind, record) VALUES (?, ?, ?)",
                (now.isoformat(), kind, json.dumps(record.to_json())),
            )
            seq = int(cursor.lastrowid or 0)
            if seq % _TRIM_EVERY == 0:
                self._db.execute("DELETE FROM events WHERE time < ?", ((now - self._retention).isoformat(),))
            return seq

        return int(await self._run(append))

    async def append_many(self, entries: list[tuple[str, ImageRecord]]) -> None:
        def append_many() -> None:
            assert self._db is not None
            now = datetime.now(timezone.utc).isoformat()
            rows = [(now, kind, json.dumps(record.to_json())) for kind, record in entries]
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT INTO events (time, kind, record) VALUES (?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

        await self._run(append_many)

    async def latest(self) -> int:
        def latest() -> int:
            assert self._db is not None
            return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])

        return int(await self._run(latest))

    async def read_after(self, seq: int, limit: int) -> list[Event]:
        def read() -> list[Event]:
            assert self._db is not None
            rows = self._db.execute("SELECT seq, kind, record FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit))
            return [Event(row[0], row[1], ImageRecord.from_json(json.loads(row[2]))) for row in rows]

        events: list[Event] = await self._run(read)
        return events

    def follow(self) -> AsyncIterator[Event] | None:
        return None


_APPEND_ATTEMPTS = 100


class MongoEventLog:
    """`events` (one document per event, `_id` = sequence number) and `event_sequence` (the
    counter) in the metadata database."""

    def __init__(self, url: str, database: str, retention: timedelta):
        from pymongo import AsyncMongoClient

        self._client: Any = AsyncMongoClient(url, serverSelectionTimeoutMS=5000, tz_aware=True)
        db = self._client[database]
        self._events = db["events"]
        self._sequence = db["event_sequence"]
        self._retention = retention

    async def __aenter__(self) -> MongoEventLog:
        await self._events.create_index("time")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._client.close()

    async def append_many(self, entries: list[tuple[str, ImageRecord]]) -> None:
        from pymongo import ReturnDocument
        from pymongo.errors import BulkWriteError, DuplicateKeyError

        # One draw of len(entries) numbers and one insert for the whole batch.
        draw = {"filter": {"_id": "events"}, "update": {"$inc": {"seq": len(entries)}}, "upsert": True, "return_document": ReturnDocument.AFTER}
        try:
            counter = await self._sequence.find_one_and_update(**draw)
        except DuplicateKeyError:
            counter = await self._sequence.find_one_and_update(**draw)
        first = int(counter["seq"]) - len(entries) + 1
        now = datetime.now(timezone.utc)
        docs = [
            {"_id": first + offset, "time": now, "kind": kind, "record": record.to_json()}
            for offset, (kind, record) in enumerate(entries)
        ]
        try:
            await self._events.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            # Numbers another writer also drew (FerretDB): those events go in one by one.
            taken = {error["index"] for error in exc.details.get("writeErrors", []) if error.get("code") == 11000}
            if len(taken) != len(exc.details.get("writeErrors", [])):
                raise
            for index in sorted(taken):
                await self.append(*entries[index])

    async def append(self, kind: str, record: ImageRecord) -> int:
        from pymongo import ReturnDocument
        from pymongo.errors import DuplicateKeyError

        now = datetime.now(timezone.utc)
        draw = {"filter": {"_id": "events"}, "update": {"$inc": {"seq": 1}}, "upsert": True, "return_document": ReturnDocument.AFTER}
        try:
            counter = await self._sequence.find_one_and_update(**draw)
        except DuplicateKeyError:
            # Concurrent first appends both tried to create the counter; it exists now.
            counter = await self._sequence.find_one_and_update(**draw)
        seq = int(counter["seq"])
        for attempt in range(_APPEND_ATTEMPTS):
            try:
                await self._events.insert_one({"_id": seq, "time": now, "kind": kind, "record": record.to_json()})
                break
            except DuplicateKeyError:
                # FerretDB v1 runs $inc as a read then a write, so concurrent appends can draw
                # the same number. The unique _id is the real arbiter: take the next free one.
                if attempt == _APPEND_ATTEMPTS - 1:
                    raise
                newest = await self._events.find_one({}, {"_id": 1}, sort=[("_id", -1)])
                seq = int(newest["_id"]) + 1 if newest else seq + 1
                await self._sequence.update_one({"_id": "events"}, {"$max": {"seq": seq}})
        if seq % _TRIM_EVERY == 0:
            await self._events.delete_many({"time": {"$lt": now - self._retention}})
        return seq

    async def latest(self) -> int:
        counter = await self._sequence.find_one({"_id": "events"})
        return int(counter["seq"]) if counter else 0

    async def read_after(self, seq: int, limit: int) -> list[Event]:
        cursor = self._events.find({"_id": {"$gt": seq}}).sort("_id", 1).limit(limit)
        return [Event(int(doc["_id"]), doc["kind"], ImageRecord.from_json(doc["record"])) async for doc in cursor]

    def follow(self) -> AsyncIterator[Event] | None:
        return self._changes()

    async def _changes(self) -> AsyncIterator[Event]:
        # Raises OperationFailure at once where change streams are missing (FerretDB, standalone).
        async with await self._events.watch([{"$match": {"operationType": "insert"}}]) as stream:
            async for change in stream:
                doc = change["fullDocument"]
                yield Event(int(doc["_id"]), doc["kind"], ImageRecord.from_json(doc["record"]))


class EventWriter:
    """The service's listener: requests hand their events over and go on; one task per process
    writes them in batches. A request never waits for the event log, and a burst of uploads
    costs one sequence draw and one insert. Events still queued at shutdown are written first."""

    def __init__(self, events: EventLog, *, max_pending: int = 10_000, max_batch: int = 256):
        self._log = events
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[str, ImageRecord]] = asyncio.Queue(max_pending)
        self.dropped = 0

    async def publish(self, kind: str, record: ImageRecord) -> None:
        try:
            self._queue.put_nowait((kind, record))
        except asyncio.QueueFull:
            # The event log is far behind (or down); the images themselves are safe.
            self.dropped += 1
            log.warning("event log backlog full; %s of %s/%s not published", kind, record.collection, record.id)

    async def run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write(batch)

    async def flush(self) -> None:
        while not self._queue.empty():
            batch = [self._queue.get_nowait() for _ in range(min(self._max_batch, self._queue.qsize()))]
            await self._write(batch)

    async def _write(self, batch: list[tuple[str, ImageRecord]]) -> None:
        try:
            await self._log.append_many(batch)
        except Exception as exc:
            self.dropped += len(batch)
            log.warning("event log write failed (%s); %d events not published", exc.__class__.__name__, len(batch))


class Subscription:
    def __init__(self, hub: EventHub, collection: str | None):
        self._hub = hub
        self.collection = collection
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(_QUEUE_SIZE)

    def offer(self, event: Event) -> None:
        if self.collection is not None and event.record.collection != self.collection:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            # A subscriber this far behind is cut off (None ends its feed); it may reconnect.
            self._hub.unsubscribe(self)
            self.queue.get_nowait()
            self.queue.put_nowait(None)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        while (event := await self.queue.get()) is not None:
            yield event


class EventHub:
    """Follows the event log while anyone subscribes and hands each event to the subscribers."""

    def __init__(self, events: EventLog, poll_interval: float):
        self.log = events
        self.poll_interval = poll_interval
        self.mode = "idle"
        self._streams = True
        self._subscribers: set[Subscription] = set()
        self._wanted = asyncio.Event()
        self._started = asyncio.Event()
        self.sockets: weakref.WeakSet[Any] = weakref.WeakSet()

    def subscribe(self, collection: str | None) -> Subscription:
        subscription = Subscription(self, collection)
        self._subscribers.add(subscription)
        self._wanted.set()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)
        if not self._subscribers:
            self._wanted.clear()

    async def started(self) -> None:
        """Wait until events written from now on will be delivered to current subscribers."""
        await self._started.wait()

    def _deliver(self, event: Event) -> None:
        for subscription in list(self._subscribers):
            subscription.offer(event)

    async def run(self) -> None:
        while True:
            await self._wanted.wait()
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The database is away; subscribers stay, and following resumes from now.
                log.warning("event feed interrupted (%s); retrying", exc.__class__.__name__)
                self._started.clear()
                await asyncio.sleep(self.poll_interval)

    async def _follow(self) -> None:
        feed = self.log.follow() if self._streams else None
        if feed is not None:
            try:
                await self._stream(feed)
                return
            except Exception as exc:
                if not _unsupported(exc):
                    raise
                log.info("no change streams in this database (%s); polling the event log", exc.__class__.__name__)
                self._streams = False
        await self._poll()

    async def _stream(self, feed: AsyncIterator[Event]) -> None:
        iterator = feed.__aiter__()
        first = asyncio.ensure_future(iterator.__anext__())
        # A database without change streams refuses at once; one that is still waiting for the
        # first change after this long has opened the stream.
        done, _ = await asyncio.wait({first}, timeout=max(self.poll_interval, 1.0))
        if done:
            event = first.result()
            self._deliver(event)
        self.mode = "change_stream"
        self._started.set()
        if not done:
            self._deliver(await first)
        async for event in iterator:
            self._deliver(event)
            if not self._subscribers:
                break
        self._started.clear()
        self.mode = "idle"

    async def _poll(self) -> None:
        low = await self.log.latest()
        seen: set[int] = set()
        gap_since: float | None = None
        self.mode = "polling"
        self._started.set()
        while self._subscribers:
            events = await self.log.read_after(low, _BATCH)
            for event in events:
                if event.seq not in seen:
                    seen.add(event.seq)
                    self._deliver(event)
            while low + 1 in seen:
                low += 1
                seen.discard(low)
            if seen:
                now = time.monotonic()
                gap_since = gap_since or now
                if now - gap_since > GAP_GRACE_SECONDS:
                    low = min(seen) - 1
                    gap_since = None
                    continue
            else:
                gap_since = None
            if len(events) < _BATCH:
                await asyncio.sleep(self.poll_interval)
        self._started.clear()
        self.mode = "idle"


def _unsupported(exc: Exception) -> bool:
    from pymongo.errors import OperationFailure

    return isinstance(exc, OperationFailure)


@asynccontextmanager
async def open_event_log(config: Config) -> AsyncIterator[EventLog]:
    retention = timedelta(seconds=config.events.retention_seconds)
    if config.metadata.backend == "mongodb":
        assert config.metadata.mongodb_url is not None  # enforced by config validation
        async with MongoEventLog(config.metadata.mongodb_url.reveal(), config.metadata.mongodb_db, retention) as mongo:
            yield mongo
        return
    async with SqliteEventLog(config.data_dir / "events.sqlite3", retention) as sqlite:
        yield sqlite
