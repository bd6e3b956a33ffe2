"""The event log in MongoDB: `events` (one document per event, `_id` = its sequence number) and
`event_sequence` (the counter, and the listeners' lease), in the metadata database, on the store's client.

Where the database offers change streams (a replica set), `follow` pushes new events; FerretDB
v1 and a standalone server refuse them, and readers poll.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from gateway.metadata.base import Event, ImageRecord
from gateway.metadata.mongo_client import Client, unavailable_on_failure, upsert_one

log = logging.getLogger(__name__)

# Old events are trimmed on every this many appends, not on each.
TRIM_EVERY = 256
_APPEND_ATTEMPTS = 100
_DUPLICATE_KEY = 11000
_COUNTER: dict[str, Any] = {"filter": {"_id": "events"}, "upsert": True, "return_document": ReturnDocument.AFTER}


def _event(doc: dict[str, Any]) -> Event:
    return Event(int(doc["_id"]), doc["kind"], ImageRecord.from_json(doc["record"]))


class MongoEventLog:
    def __init__(self, client: Client, database: str, retention: timedelta):
        """On `client`, which the caller opened and closes."""
        db = client[database]
        self._events = db["events"]
        self._sequence = db["event_sequence"]
        self._retention = retention

    async def ensure_indexes(self) -> None:
        with unavailable_on_failure():
            await self._events.create_index("time")

    async def _draw(self, count: int) -> int:
        """Take `count` numbers from the counter; the last of them."""
        draw = {**_COUNTER, "update": {"$inc": {"seq": count}}}
        try:
            counter = await self._sequence.find_one_and_update(**draw)
        except DuplicateKeyError:
            # Concurrent first appends both tried to create the counter; it exists now.
            counter = await self._sequence.find_one_and_update(**draw)
        # An upsert that returns the document after it: there is always one.
        assert counter is not None
        return int(counter["seq"])

    async def append_many(self, entries: list[tuple[str, ImageRecord]]) -> None:
        with unavailable_on_failure():
            # One draw of len(entries) numbers and one insert for the whole batch.
            first = await self._draw(len(entries)) - len(entries) + 1
            now = datetime.now(timezone.utc)
            docs = [
                {"_id": first + offset, "time": now, "kind": kind, "record": record.to_json()}
                for offset, (kind, record) in enumerate(entries)
            ]
            try:
                await self._events.insert_many(docs, ordered=False)
            except BulkWriteError as exc:
                # Numbers another writer also drew (FerretDB): those events go in one by one.
                errors = exc.details.get("writeErrors", [])
                taken = {error["index"] for error in errors if error.get("code") == _DUPLICATE_KEY}
                if len(taken) != len(errors):
                    raise
                for index in sorted(taken):
                    await self.append(*entries[index])

    async def append(self, kind: str, record: ImageRecord) -> int:
        with unavailable_on_failure():
            now = datetime.now(timezone.utc)
            seq = await self._draw(1)
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
            if seq % TRIM_EVERY == 0:
                await self._events.delete_many({"time": {"$lt": now - self._retention}})
            return seq

    async def latest(self) -> int:
        with unavailable_on_failure():
            counter = await self._sequence.find_one({"_id": "events"})
        return int(counter["seq"]) if counter else 0

    async def read_after(self, seq: int, limit: int) -> list[Event]:
        with unavailable_on_failure():
            cursor = self._events.find({"_id": {"$gt": seq}}).sort("_id", 1).limit(limit)
            return [_event(doc) async for doc in cursor]

    async def listen_until(self, until: float) -> None:
        with unavailable_on_failure():
            await upsert_one(self._sequence, {"_id": "listeners"}, {"$max": {"until": until}})

    async def listening_until(self) -> float:
        with unavailable_on_failure():
            lease = await self._sequence.find_one({"_id": "listeners"})
        return float(lease["until"]) if lease else 0.0

    async def follow(self) -> _ChangeFeed | None:
        with unavailable_on_failure():
            try:
                stream = await self._events.watch([{"$match": {"operationType": "insert"}}])
            except OperationFailure as exc:
                # Refused at once where change streams are missing (FerretDB v1, a standalone server).
                log.info("no change streams in this database (%s); the event log is polled", exc.__class__.__name__)
                return None
        return _ChangeFeed(stream)


class _ChangeFeed:
    """Inserts into `events`, as the change stream opened by `follow` reports them."""

    def __init__(self, stream: Any):
        self._stream = stream

    def __aiter__(self) -> _ChangeFeed:
        return self

    async def __anext__(self) -> Event:
        with unavailable_on_failure():
            change = await self._stream.__anext__()
        return _event(change["fullDocument"])

    async def aclose(self) -> None:
        with unavailable_on_failure():
            await self._stream.close()
