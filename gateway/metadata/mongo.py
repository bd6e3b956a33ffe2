"""MongoDB metadata through PyMongo's native async client (`AsyncMongoClient`; Motor is deprecated).

Records live in one collection, `images`, whose `_id` is `<collection>/<id>`: the object key
without its extension. Ids are unique per collection, not globally, so an export imported into
another collection keeps its ids. `collections` holds the registry (generation, drop state), and
`events`/`event_sequence` the event log (`mongo_events`).

The store and the event log take the client they run on (one connection pool to the database);
whoever opened it closes it: `open` and `open_with_event_log` do both.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError

from gateway.config import Config
from gateway.errors import Conflict, NotFound
from gateway.metadata.base import RECORD_FIELDS, CollectionStats, EventLog, IdempotencyEntry, ImageRecord, PendingUpload, utcnow
from gateway.metadata.mongo_client import Client, connect, unavailable_on_failure
from gateway.metadata.mongo_events import MongoEventLog
from gateway.metadata.query import ID_FIELD, SHA256_FIELD, Condition, ListQuery, keyset, order, sort_position


def _doc_id(collection: str, image_id: str) -> str:
    return f"{collection}/{image_id}"


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


def _to_doc(record: ImageRecord) -> dict[str, Any]:
    doc = {name: getattr(record, name) for name in RECORD_FIELDS}
    doc["_id"] = _doc_id(record.collection, record.id)
    doc["sort_keys"] = _sort_keys(record.properties)
    return doc


def _to_record(doc: dict[str, Any]) -> ImageRecord:
    return ImageRecord(**{name: doc[name] for name in RECORD_FIELDS if name in doc})


def _condition(condition: Condition) -> dict[str, Any]:
    if condition.field in (ID_FIELD, SHA256_FIELD):
        return {"id" if condition.field == ID_FIELD else "sha256": {condition.op: condition.value}}
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
            terms.append(("time" if key.field == "time" else "id", key.descending))
            values.append(value)
        else:
            terms += [(f"sort_keys.{key.field}.b", key.descending), (f"sort_keys.{key.field}.v", key.descending)]
            values += list(value) if value is not None else [None, None]
    terms.append(("id", keys[-1].descending))
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


def _filter(collection: str, conditions: tuple[Condition, ...], owner: str | None) -> dict[str, Any]:
    scope: dict[str, Any] = {"collection": collection} if owner is None else {"collection": collection, "owner": owner}
    if not conditions:
        return scope
    return {"$and": [scope, *(_condition(c) for c in conditions)]}


class MongoMetadataStore:
    name = "mongodb"

    def __init__(self, client: Client, database: str):
        self._client = client
        self._db = client[database]
        self._images = self._db["images"]
        self._collections = self._db["collections"]
        self._uploads = self._db["uploads"]
        self._idempotency = self._db["idempotency"]

    @classmethod
    @asynccontextmanager
    async def open(cls, config: Config) -> AsyncIterator[MongoMetadataStore]:
        async with connect(config) as client:
            store = cls(client, config.metadata.mongodb_db)
            await store.ensure_indexes()
            yield store

    @classmethod
    @asynccontextmanager
    async def open_with_event_log(cls, config: Config) -> AsyncIterator[tuple[MongoMetadataStore, EventLog]]:
        async with connect(config) as client:
            store = cls(client, config.metadata.mongodb_db)
            await store.ensure_indexes()
            events = MongoEventLog(client, config.metadata.mongodb_db, timedelta(seconds=config.events.retention_seconds))
            await events.ensure_indexes()
            yield store, events

    async def ensure_indexes(self) -> None:
        with unavailable_on_failure():
            await self._images.create_index([("collection", ASCENDING), ("time", DESCENDING), ("id", DESCENDING)], name="collection_time_id")
            await self._images.create_index([("collection", ASCENDING), ("path", ASCENDING)], name="collection_path")
            await self._images.create_index([("sha256", ASCENDING)], name="sha256")
            await self._images.create_index(
                [("collection", ASCENDING), ("owner", ASCENDING), ("time", DESCENDING), ("id", DESCENDING)], name="collection_owner_time_id"
            )
            await self._uploads.create_index([("expires_at", ASCENDING)], name="expires_at")
            await self._idempotency.create_index([("expires_at", ASCENDING)], name="expires_at")
            await self._backfill_sort_keys()

    async def _backfill_sort_keys(self) -> None:
        # Records written before sort keys existed get them once, at start-up.
        async for doc in self._images.find({"sort_keys": {"$exists": False}}, {"properties": 1}):
            await self._images.update_one({"_id": doc["_id"]}, {"$set": {"sort_keys": _sort_keys(doc.get("properties") or {})}})

    # Every driver call goes through here so failures surface as one error type.
    async def _call(self, awaitable: Any) -> Any:
        with unavailable_on_failure():
            try:
                return await awaitable
            except DuplicateKeyError:
                raise Conflict("an image with that id exists", code="image_exists") from None

    async def insert(self, record: ImageRecord) -> None:
        await self._call(self._images.insert_one(_to_doc(record)))

    async def insert_many(self, records: list[ImageRecord]) -> None:
        if not records:
            return
        with unavailable_on_failure():
            try:
                # Unordered: every free id is added even when one is taken.
                await self._images.insert_many([_to_doc(record) for record in records], ordered=False)
            except BulkWriteError as exc:
                if any(error.get("code") != 11000 for error in exc.details.get("writeErrors", [])):
                    raise
                raise Conflict("an image with that id exists", code="image_exists") from None

    async def get(self, collection: str, image_id: str) -> ImageRecord:
        doc = await self._call(self._images.find_one({"_id": _doc_id(collection, image_id)}))
        if doc is None:
            raise NotFound("no image with that id", code="image_not_found")
        return _to_record(doc)

    async def find(self, collection: str, query: ListQuery) -> list[ImageRecord]:
        spec = _filter(collection, query.conditions, query.owner)
        if query.sort:
            terms, values = _sort_terms(query)
            if values is not None:
                spec = {"$and": [spec, _after(terms, values)]}
            sort = [(name, DESCENDING if descending else ASCENDING) for name, descending in terms]
            cursor = self._images.find(spec).sort(sort).skip(query.skip).limit(query.limit)
            docs = await self._call(cursor.to_list(length=query.limit))
            return [_to_record(doc) for doc in docs]
        if query.after is not None:
            # The bound on time alone gives MongoDB the index range's start (time <= cursor on
            # collection_time_id, or collection_owner_time_id for an owner); the `$or` then only
            # drops the cursor's own time's records up to it, so a deep page reads O(page) keys.
            op, inclusive = ("$lt", "$lte") if query.descending else ("$gt", "$gte")
            keyset = {
                "time": {inclusive: query.after.time},
                "$or": [{"time": {op: query.after.time}}, {"id": {op: query.after.id}}],
            }
            spec = {"$and": [spec, keyset]}
        direction = DESCENDING if query.descending else ASCENDING
        cursor = self._images.find(spec).sort([("time", direction), ("id", direction)]).skip(query.skip).limit(query.limit)
        docs = await self._call(cursor.to_list(length=query.limit))
        return [_to_record(doc) for doc in docs]

    async def count(self, collection: str, conditions: tuple[Condition, ...], *, owner: str | None = None) -> int:
        return await self._call(self._images.count_documents(_filter(collection, conditions, owner)))

    async def replace_properties(self, record: ImageRecord, expected_version: int) -> ImageRecord | None:
        result = await self._call(
            self._images.update_one(
                {"_id": _doc_id(record.collection, record.id), "version": expected_version},
                {"$set": {"properties": record.properties, "sort_keys": _sort_keys(record.properties), "updated_at": record.updated_at, "version": record.version}},
            )
        )
        if result.matched_count == 1:
            return record
        await self.get(record.collection, record.id)
        return None

    async def delete(self, collection: str, image_id: str) -> ImageRecord:
        doc = await self._call(self._images.find_one_and_delete({"_id": _doc_id(collection, image_id)}))
        if doc is None:
            raise NotFound("no image with that id", code="image_not_found")
        return _to_record(doc)

    async def delete_records(self, collection: str) -> int:
        result = await self._call(self._images.delete_many({"collection": collection}))
        return result.deleted_count

    async def records(self, collection: str | None = None) -> AsyncIterator[ImageRecord]:
        spec = {} if collection is None else {"collection": collection}
        with unavailable_on_failure():
            async for doc in self._images.find(spec).sort("path", ASCENDING).batch_size(500):
                yield _to_record(doc)

    async def ensure_collection(self, name: str) -> str:
        upsert = {"$setOnInsert": {"generation": secrets.token_hex(8), "state": "active", "created_at": utcnow()}}
        with unavailable_on_failure():
            try:
                doc = await self._collections.find_one_and_update(
                    {"_id": name}, upsert, upsert=True, return_document=ReturnDocument.AFTER
                )
            except DuplicateKeyError:
                # Two first uploads raced to create the entry; the other one won, so read theirs.
                doc = await self._collections.find_one({"_id": name})
        # None: the winner's collection was dropped meanwhile, as good as being deleted.
        if doc is None or doc["state"] != "active":
            raise Conflict("the collection is being deleted", code="collection_dropping")
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
        documents = await self._call(self._images.count_documents({"collection": name}))
        if documents == 0:
            return CollectionStats(name, 0, 0, created_at, created_at)
        pipeline: list[dict[str, Any]] = [{"$match": {"collection": name}}, {"$group": {"_id": None, "bytes": {"$sum": "$size"}}}]
        groups = await self._call((await self._call(self._images.aggregate(pipeline))).to_list(length=1))
        newest = await self._call(
            self._images.find_one({"collection": name}, {"updated_at": 1}, sort=[("updated_at", DESCENDING)])
        )
        updated_at = newest["updated_at"] if newest else created_at
        return CollectionStats(name, documents, groups[0]["bytes"] if groups else 0, created_at, updated_at)

    async def ping(self) -> None:
        await self._call(self._db.command("ping"))

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
