"""MongoDB metadata through PyMongo's native async client (`AsyncMongoClient`; Motor is deprecated).

Each image collection's records live in a MongoDB collection of their own, `images.<name>`, with
the image id as `_id`: ids are unique per collection (an export imported into another collection
keeps its ids), a page or a lookup reads only that collection's records (FerretDB 1.24 on SQLite
reads a whole MongoDB collection for every query, see the README), and a drop is a `drop`.
`collections` holds the registry (generation, drop state), and `events`/`event_sequence` the
event log (`mongo_events`). On FerretDB, `revisions` holds each image collection's revision, which
validates the record reads this process keeps (`mongo_reads`). Releases before this layout kept every record in one collection,
`images`, keyed `<collection>/<id>`; `mongo_migrate` moves them, and the store refuses to open
while any is left.

The store and the event log take the client they run on (one connection pool to the database);
whoever opened it closes it: `open` and `open_with_event_log` do both.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from gateway.config import Config
from gateway.errors import Conflict, NotFound, Unavailable
from gateway.metadata.base import RECORD_FIELDS, CollectionStats, EventLog, IdempotencyEntry, ImageRecord, PendingUpload, utcnow
from gateway.metadata.mongo_client import Client, connect, unavailable_on_failure
from gateway.metadata.mongo_events import MongoEventLog
from gateway.metadata.mongo_reads import RevisionCache
from gateway.metadata.query import ID_FIELD, SHA256_FIELD, Condition, ListQuery, keyset, order, sort_position

# `images.<collection name>`; collection names cannot hold "/", so `records()` can order whole
# collections by `<name>/`, the prefix of every path in them.
RECORDS_PREFIX = "images."
# One document per image collection, its records' revision (`mongo_reads`); FerretDB only.
REVISIONS = "revisions"
# Where releases before the per-collection layout kept every record (`mongo_migrate`).
LEGACY_RECORDS = "images"
_DUPLICATE_KEY = 11000
_NAMESPACE_NOT_FOUND = 26
# Stored in each document; the collection is the MongoDB collection's name and the id its `_id`.
STORED_FIELDS = tuple(name for name in RECORD_FIELDS if name not in ("collection", "id"))
# Every page is a walk of one of the first two (forward or backward: both directions of the
# time order), entered at the cursor's time; `path` streams `records()`, `sha256` finds a
# duplicate upload. Property sorts and filters sort or filter what these yield.
RECORD_INDEXES = (
    IndexModel([("time", DESCENDING), ("_id", DESCENDING)], name="time_id"),
    IndexModel([("owner", ASCENDING), ("time", DESCENDING), ("_id", DESCENDING)], name="owner_time_id"),
    IndexModel([("path", ASCENDING)], name="path"),
    IndexModel([("sha256", ASCENDING)], name="sha256"),
)


def records_collection(name: str) -> str:
    """The MongoDB collection holding an image collection's records."""
    return RECORDS_PREFIX + name


def _sort_keys(properties: dict[str, Any]) -> dict[str, Any]:
    """Each top-level property's sort position (query.sort_position) as {b: bracket, v: value},
    stored beside the properties: sorting on these gives every backend the same order, where
    MongoDB's own order of raw values would rank arrays by their smallest or largest element."""
    keys: dict[str, Any] = {}
    for key, value in properties.items():
        bracket, inner = sort_position(True, value)
        if bracket is not None:
            keys[key] = {"b": bracket} if inner is None else {"b": bracket, "v": inner}
    return keys


def to_doc(record: ImageRecord) -> dict[str, Any]:
    doc: dict[str, Any] = {"_id": record.id}
    doc.update((name, getattr(record, name)) for name in STORED_FIELDS)
    doc["sort_keys"] = _sort_keys(record.properties)
    return doc


def _to_record(collection: str, doc: dict[str, Any]) -> ImageRecord:
    return ImageRecord(collection=collection, id=doc["_id"], **{name: doc[name] for name in STORED_FIELDS if name in doc})


def _condition(condition: Condition) -> dict[str, Any]:
    if condition.field in (ID_FIELD, SHA256_FIELD):
        return {"_id" if condition.field == ID_FIELD else "sha256": {condition.op: condition.value}}
    field = "time" if condition.field == "time" else f"properties.{condition.field}"
    return {field: {condition.op: condition.value}}


def _sort_terms(query: ListQuery) -> tuple[list[tuple[str, bool]], list[Any] | None]:
    """The sort fields (name, descending) and the cursor's value for each."""
    keys = order(query)
    cursor = keyset(query)
    terms: list[tuple[str, bool]] = []
    values: list[Any] = []
    for index, key in enumerate(keys):
        value = cursor.values[index] if cursor is not None else None
        if key.field in ("time", ID_FIELD):
            terms.append(("time" if key.field == "time" else "_id", key.descending))
            values.append(value)
        else:
            terms += [(f"sort_keys.{key.field}.b", key.descending), (f"sort_keys.{key.field}.v", key.descending)]
            values += list(value) if value is not None else [None, None]
    terms.append(("_id", keys[-1].descending))
    values.append(cursor.id if cursor is not None else None)
    return terms, (values if cursor is not None else None)


def _after(terms: list[tuple[str, bool]], values: list[Any]) -> dict[str, Any]:
    """Documents strictly after the cursor; an absent field sorts first ascending, last
    descending. Values compared in one alternative share a type (equal brackets before them)."""
    alternatives = []
    for index, (name, descending) in enumerate(terms):
        value = values[index]
        if value is None and descending:
            continue
        clause: dict[str, Any] = {eq_name: eq_value for (eq_name, _), eq_value in zip(terms[:index], values[:index])}
        if value is None:
            step: dict[str, Any] = {name: {"$exists": True}}
        elif descending:
            step = {"$or": [{name: {"$lt": value}}, {name: None}]}
        else:
            step = {name: {"$gt": value}}
        alternatives.append({"$and": [clause, step]} if clause else step)
    return {"$or": alternatives} if alternatives else {"_id": {"$in": []}}


def _filter(conditions: tuple[Condition, ...], owner: str | None, *more: dict[str, Any]) -> dict[str, Any]:
    clauses = ([] if owner is None else [{"owner": owner}]) + [_condition(c) for c in conditions] + list(more)
    if not clauses:
        return {}
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _duplicates_only(exc: BulkWriteError) -> bool:
    return all(error.get("code") == _DUPLICATE_KEY for error in exc.details.get("writeErrors", []))


class MongoMetadataStore:
    name = "mongodb"

    def __init__(self, client: Client, database: str, *, read_cache: bool | None = None):
        """`read_cache`: keep record reads per process (`mongo_reads`); None decides in `prepare`,
        on for FerretDB, whose reads scan. Every process writing one database must agree."""
        self._client = client
        self.db = client[database]
        self._collections = self.db["collections"]
        self._read_cache = read_cache
        self.reads: RevisionCache | None = None if not read_cache else RevisionCache(self.db[REVISIONS])
        # Image collections whose indexes this process has ensured since it last dropped them.
        self._indexed: set[str] = set()
        self._indexing = asyncio.Lock()
        # Whether a whole collection is counted from the server's own row count (`prepare`).
        self._row_counts = False
        # Uploads in progress (tus, direct) and idempotency keys: one collection each.
        self._uploads = self.db["uploads"]
        self._idempotency = self.db["idempotency"]

    @classmethod
    @asynccontextmanager
    async def open(cls, config: Config) -> AsyncIterator[MongoMetadataStore]:
        async with connect(config) as client:
            store = cls(client, config.metadata.mongodb_db)
            await store.prepare()
            yield store

    @classmethod
    @asynccontextmanager
    async def open_with_event_log(cls, config: Config) -> AsyncIterator[tuple[MongoMetadataStore, EventLog]]:
        async with connect(config) as client:
            store = cls(client, config.metadata.mongodb_db)
            await store.prepare()
            events = MongoEventLog(client, config.metadata.mongodb_db, timedelta(seconds=config.events.retention_seconds))
            await events.ensure_indexes()
            yield store, events

    def records_of(self, collection: str) -> Any:
        """The MongoDB collection of an image collection's records."""
        return self.db[records_collection(collection)]

    async def record_collections(self) -> list[str]:
        """The image collections that have a MongoDB collection of records (registered or not:
        a test or an interrupted drop may leave one), in the order of their paths."""
        with unavailable_on_failure():
            names = await self.db.list_collection_names()
        found = [name[len(RECORDS_PREFIX):] for name in names if name.startswith(RECORDS_PREFIX)]
        return sorted(found, key=lambda name: name + "/")

    async def legacy_records(self) -> bool:
        """Whether records of the old one-collection layout are left (limit 1 and no filter: even
        FerretDB answers that without reading the collection)."""
        return await self._call(self.db[LEGACY_RECORDS].find_one({}, {"_id": 1})) is not None

    async def prepare(self) -> None:
        """What opening the store checks and ensures: no records left in the old layout, every
        collection's indexes (and those of uploads and idempotency keys), and how this server counts."""
        info = await self._call(self.db.command("buildInfo"))
        # FerretDB 1.24 reads and decodes every record to count them (0.15 ms each); its
        # `$collStats` count is SQLite's count of the table's rows, exact and some 100 times
        # cheaper. MongoDB's own metadata count can be off after an unclean shutdown, so there
        # the records are counted.
        self._row_counts = "ferretdbVersion" in info
        if self._read_cache is None and self._row_counts:
            self.reads = RevisionCache(self.db[REVISIONS])
        if await self.legacy_records():
            raise Unavailable(
                "the metadata database holds records in the layout of an earlier release: run `gateway migrate` once, "
                "with every gateway stopped",
                code="migration_required",
            )
        for name in await self.record_collections():
            await self.ensure_record_indexes(name)
        with unavailable_on_failure():
            # The sweeps walk these in expiry order (a no-op where the index exists).
            await self._uploads.create_index([("expires_at", ASCENDING)], name="expires_at")
            await self._idempotency.create_index([("expires_at", ASCENDING)], name="expires_at")

    async def ensure_record_indexes(self, collection: str, *, again: bool = True) -> None:
        """Create the indexes of a collection's records (a no-op where they exist); with
        `again=False`, only if this process has not since it last dropped them."""
        records = self.records_of(collection)
        # Concurrent first uploads of this process take turns, so the later ones find the
        # indexes made.
        async with self._indexing:
            if not again and collection in self._indexed:
                return
            with unavailable_on_failure():
                existing = {index["name"] async for index in await records.list_indexes()}
                # Only the missing ones, one at a time: FerretDB 1.24 drops the connection when
                # one `createIndexes` names two or more that exist, which another replica may
                # have made since the listing.
                for index in RECORD_INDEXES:
                    if index.document["name"] not in existing:
                        await records.create_indexes([index])
            self._indexed.add(collection)

    # Every driver call goes through here so failures surface as one error type.
    async def _call(self, awaitable: Any) -> Any:
        with unavailable_on_failure():
            try:
                return await awaitable
            except DuplicateKeyError:
                raise Conflict("an image with that id exists", code="image_exists") from None

    async def _changed(self, collection: str) -> None:
        if self.reads is not None:
            await self.reads.changed(collection)

    async def _cached(self, collection: str, key: Any, load: Callable[[], Awaitable[Any]]) -> Any:
        return await (load() if self.reads is None else self.reads.read(collection, key, load))

    async def insert(self, record: ImageRecord) -> None:
        await self._call(self.records_of(record.collection).insert_one(to_doc(record)))
        await self._changed(record.collection)

    async def insert_many(self, records: list[ImageRecord]) -> None:
        by_collection: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            by_collection.setdefault(record.collection, []).append(to_doc(record))
        taken = False
        with unavailable_on_failure():
            for collection, docs in by_collection.items():
                try:
                    # Unordered: every free id is added even when one is taken.
                    await self.records_of(collection).insert_many(docs, ordered=False)
                except BulkWriteError as exc:
                    if not _duplicates_only(exc):
                        raise
                    taken = True
                finally:
                    # Whatever part of the batch went in is a change, even when the rest failed.
                    await self._changed(collection)
        if taken:
            raise Conflict("an image with that id exists", code="image_exists")

    async def get(self, collection: str, image_id: str) -> ImageRecord:
        record: ImageRecord = await self._cached(collection, ("get", image_id), lambda: self._get(collection, image_id))
        return record

    async def _get(self, collection: str, image_id: str) -> ImageRecord:
        doc = await self._call(self.records_of(collection).find_one({"_id": image_id}))
        if doc is None:
            raise NotFound("no image with that id", code="image_not_found")
        return _to_record(collection, doc)

    async def find(self, collection: str, query: ListQuery) -> list[ImageRecord]:
        # repr: a query's values may be lists (`$in`), which do not hash; its repr is as exact.
        page: list[ImageRecord] = await self._cached(collection, ("find", repr(query)), lambda: self._find(collection, query))
        return list(page)

    async def _find(self, collection: str, query: ListQuery) -> list[ImageRecord]:
        if query.sort:
            terms, values = _sort_terms(query)
            spec = _filter(query.conditions, query.owner, *([] if values is None else [_after(terms, values)]))
            sort = [(name, DESCENDING if descending else ASCENDING) for name, descending in terms]
        else:
            keyset: list[dict[str, Any]] = []
            if query.after is not None:
                # The bound on time alone gives MongoDB the index range's start (time <= cursor on
                # time_id, or owner_time_id for an owner); the `$or` then only drops the cursor's
                # own time's records up to it, so a deep page reads O(page) keys.
                op, inclusive = ("$lt", "$lte") if query.descending else ("$gt", "$gte")
                keyset = [{"time": {inclusive: query.after.time}}, {"$or": [{"time": {op: query.after.time}}, {"_id": {op: query.after.id}}]}]
            spec = _filter(query.conditions, query.owner, *keyset)
            direction = DESCENDING if query.descending else ASCENDING
            sort = [("time", direction), ("_id", direction)]
        cursor = self.records_of(collection).find(spec).sort(sort).skip(query.skip).limit(query.limit)
        docs = await self._call(cursor.to_list(length=query.limit))
        return [_to_record(collection, doc) for doc in docs]

    async def count(self, collection: str, conditions: tuple[Condition, ...], *, owner: str | None = None) -> int:
        found: int = await self._cached(collection, ("count", repr(conditions), owner), lambda: self._count(collection, conditions, owner))
        return found

    async def _count(self, collection: str, conditions: tuple[Condition, ...], owner: str | None) -> int:
        if self._row_counts and not conditions and owner is None:
            return await self._row_count(collection)
        return await self._call(self.records_of(collection).count_documents(_filter(conditions, owner)))

    async def _row_count(self, collection: str) -> int:
        with unavailable_on_failure():
            try:
                stats = await (await self.records_of(collection).aggregate([{"$collStats": {"count": {}}}])).to_list(length=1)
            except OperationFailure as exc:
                if exc.code == _NAMESPACE_NOT_FOUND:
                    return 0
                raise
        return int(stats[0]["count"])

    async def replace_properties(self, record: ImageRecord, expected_version: int) -> ImageRecord | None:
        result = await self._call(
            self.records_of(record.collection).update_one(
                {"_id": record.id, "version": expected_version},
                {"$set": {"properties": record.properties, "sort_keys": _sort_keys(record.properties), "updated_at": record.updated_at, "version": record.version}},
            )
        )
        if result.matched_count == 1:
            await self._changed(record.collection)
            return record
        await self.get(record.collection, record.id)
        return None

    async def delete(self, collection: str, image_id: str) -> ImageRecord:
        doc = await self._call(self.records_of(collection).find_one_and_delete({"_id": image_id}))
        if doc is None:
            raise NotFound("no image with that id", code="image_not_found")
        await self._changed(collection)
        return _to_record(collection, doc)

    async def delete_records(self, collection: str) -> int:
        records = self.records_of(collection)
        # Counted, then dropped with its indexes (the next registration makes them again); a
        # record an upload writes in between goes with the rest, uncounted, and that upload
        # fails its generation check.
        count = await self._count(collection, (), None)
        await self._call(records.drop())
        self._indexed.discard(collection)
        await self._changed(collection)
        return count

    async def records(self, collection: str | None = None) -> AsyncIterator[ImageRecord]:
        names = [collection] if collection is not None else await self.record_collections()
        with unavailable_on_failure():
            for name in names:
                async for doc in self.records_of(name).find({}).sort("path", ASCENDING).batch_size(500):
                    yield _to_record(name, doc)

    async def ensure_collection(self, name: str) -> str:
        generation = secrets.token_hex(8)
        upsert = {"$setOnInsert": {"generation": generation, "state": "active", "created_at": utcnow()}}
        doc: dict[str, Any] | None
        with unavailable_on_failure():
            try:
                before = await self._collections.find_one_and_update(
                    {"_id": name}, upsert, upsert=True, return_document=ReturnDocument.BEFORE
                )
                # None: this call registered it.
                doc = before or {"generation": generation, "state": "active"}
            except DuplicateKeyError:
                # Two first uploads raced to create the entry; the other one won, so read theirs.
                before = doc = await self._collections.find_one({"_id": name})
        # None: the winner's collection was dropped meanwhile, as good as being deleted.
        if doc is None or doc["state"] != "active":
            raise Conflict("the collection is being deleted", code="collection_dropping")
        # A new registration may follow a drop (here or on another replica), which took the
        # indexes with the records.
        await self.ensure_record_indexes(name, again=before is None)
        return doc["generation"]

    async def collection_generation(self, name: str) -> str | None:
        doc = await self._call(self._collections.find_one({"_id": name, "state": "active"}))
        return None if doc is None else doc["generation"]

    async def begin_drop(self, name: str) -> bool:
        result = await self._call(self._collections.update_one({"_id": name}, {"$set": {"state": "dropping"}}))
        return result.matched_count == 1

    async def finish_drop(self, name: str) -> None:
        await self._call(self._collections.delete_one({"_id": name}))

    async def collections(self, *, include_dropping: bool = False) -> list[str]:
        spec = {} if include_dropping else {"state": "active"}
        docs = await self._call(self._collections.find(spec, {"_id": 1}).sort("_id", ASCENDING).to_list(length=None))
        return [doc["_id"] for doc in docs]

    async def collection_stats(self, name: str) -> CollectionStats:
        registered = await self._call(self._collections.find_one({"_id": name, "state": "active"}))
        if registered is None:
            raise NotFound("no collection with that name", code="collection_not_found")
        # FerretDB v1 has no $max accumulator and computes only the first accumulator of a
        # $group, so each figure is its own query.
        created_at = registered["created_at"]
        documents, size, updated_at = await self._cached(name, ("stats",), lambda: self._record_stats(name))
        return CollectionStats(name, documents, size, created_at, updated_at or created_at)

    async def _record_stats(self, name: str) -> tuple[int, int, datetime | None]:
        """The records' count, total size and newest update time (None without records)."""
        records = self.records_of(name)
        documents = await self._count(name, (), None)
        if documents == 0:
            return 0, 0, None
        pipeline: list[dict[str, Any]] = [{"$group": {"_id": None, "bytes": {"$sum": "$size"}}}]
        groups = await self._call((await self._call(records.aggregate(pipeline))).to_list(length=1))
        newest = await self._call(records.find_one({}, {"updated_at": 1}, sort=[("updated_at", DESCENDING)]))
        return documents, groups[0]["bytes"] if groups else 0, newest["updated_at"] if newest else None

    async def ping(self) -> None:
        await self._call(self.db.command("ping"))

    # --- uploads in progress and idempotency keys -------------------------------------------

    async def insert_upload(self, upload: PendingUpload) -> None:
        with unavailable_on_failure():
            try:
                await self._uploads.insert_one({"_id": upload.id, **dataclasses.asdict(upload)})
            except DuplicateKeyError:
                raise Conflict("an upload with that id exists", code="upload_exists") from None

    async def get_upload(self, upload_id: str) -> PendingUpload:
        doc = await self._call(self._uploads.find_one({"_id": upload_id}))
        if doc is None:
            raise NotFound("no upload with that id", code="upload_not_found")
        return _from_doc(PendingUpload, doc)

    async def replace_upload(self, upload: PendingUpload, expected_version: int) -> bool:
        result = await self._call(
            self._uploads.replace_one({"_id": upload.id, "version": expected_version}, {"_id": upload.id, **dataclasses.asdict(upload)})
        )
        return result.matched_count == 1

    async def delete_upload(self, upload_id: str) -> None:
        await self._call(self._uploads.delete_one({"_id": upload_id}))

    async def pending_uploads(self, *, expired_before: datetime | None = None, limit: int = 1000) -> list[PendingUpload]:
        spec = {} if expired_before is None else {"expires_at": {"$lt": expired_before}}
        docs = await self._call(self._uploads.find(spec).sort("expires_at", ASCENDING).limit(limit).to_list(length=limit))
        return [_from_doc(PendingUpload, doc) for doc in docs]

    async def claim_idempotency(self, entry: IdempotencyEntry) -> IdempotencyEntry | None:
        await self._call(self._idempotency.delete_one({"_id": entry.scope, "expires_at": {"$lt": utcnow()}}))
        with unavailable_on_failure():
            try:
                await self._idempotency.insert_one({"_id": entry.scope, **dataclasses.asdict(entry)})
                return None
            except DuplicateKeyError:
                pass
        doc = await self._call(self._idempotency.find_one({"_id": entry.scope}))
        if doc is None:
            # Removed between our insert and our read (it expired): try once more.
            return await self.claim_idempotency(entry)
        return _from_doc(IdempotencyEntry, doc)

    async def replace_idempotency(self, entry: IdempotencyEntry, expected_version: int) -> bool:
        result = await self._call(
            self._idempotency.replace_one({"_id": entry.scope, "version": expected_version}, {"_id": entry.scope, **dataclasses.asdict(entry)})
        )
        return result.matched_count == 1

    async def purge_idempotency(self, before: datetime) -> int:
        result = await self._call(self._idempotency.delete_many({"expires_at": {"$lt": before}}))
        return result.deleted_count


def _from_doc(cls: Any, doc: dict[str, Any]) -> Any:
    return cls(**{item.name: doc[item.name] for item in dataclasses.fields(cls) if item.name in doc})
