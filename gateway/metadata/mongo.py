"""MongoDB metadata through PyMongo's native async client (`AsyncMongoClient`; Motor is deprecated).

Records live in one collection, `images`, whose `_id` is `<collection>/<id>`: the object key
without its extension. Ids are unique per collection, not globally, so an export imported into
another collection keeps its ids. `collections` holds the registry (generation, drop state).
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from gateway.errors import Conflict, NotFound, Unavailable
from gateway.metadata.base import CollectionStats, IdempotencyEntry, ImageRecord, PendingUpload, utcnow
from gateway.metadata.query import Condition, ListQuery, OWNER_FIELD

_FIELDS = (
    "collection", "id", "image", "time", "updated_at", "content_type", "format", "width", "height",
    "size", "sha256", "path", "properties", "owner", "version",
)


def _doc_id(collection: str, image_id: str) -> str:
    return f"{collection}/{image_id}"


def _to_doc(record: ImageRecord) -> dict[str, Any]:
    doc = {name: getattr(record, name) for name in _FIELDS}
    doc["_id"] = _doc_id(record.collection, record.id)
    return doc


def _to_record(doc: dict[str, Any]) -> ImageRecord:
    return ImageRecord(**{name: doc.get(name) for name in _FIELDS if name in doc})


def _condition(condition: Condition) -> dict[str, Any]:
    if condition.field == OWNER_FIELD:
        return {"owner": {condition.op: condition.value}}
    field = "time" if condition.field == "time" else f"properties.{condition.field}"
    return {field: {condition.op: condition.value}}


def _filter(collection: str, conditions: tuple[Condition, ...]) -> dict[str, Any]:
    if not conditions:
        return {"collection": collection}
    return {"$and": [{"collection": collection}, *(_condition(c) for c in conditions)]}


class MongoMetadataStore:
    name = "mongodb"

    def __init__(self, url: str, database: str, *, timeout_ms: int = 5000):
        # tz_aware: datetimes come back as UTC-aware, equal to what was stored.
        self._client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            url, tz_aware=True, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms,
            appname="image-gateway",
        )
        self._db = self._client[database]
        self._images = self._db["images"]
        self._collections = self._db["collections"]
        self._uploads = self._db["uploads"]
        self._idempotency = self._db["idempotency"]

    async def __aenter__(self) -> MongoMetadataStore:
        try:
            await self._images.create_index([("collection", ASCENDING), ("time", DESCENDING), ("id", DESCENDING)], name="collection_time_id")
            await self._images.create_index([("collection", ASCENDING), ("path", ASCENDING)], name="collection_path")
            await self._images.create_index([("sha256", ASCENDING)], name="sha256")
            await self._uploads.create_index([("expires_at", ASCENDING)], name="expires_at")
            await self._idempotency.create_index([("expires_at", ASCENDING)], name="expires_at")
        except PyMongoError as exc:
            await self._client.close()
            raise Unavailable(f"the metadata database is unreachable ({exc.__class__.__name__})", code="database_unavailable") from exc
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._client.close()

    # Every driver call goes through here so failures surface as one error type.
    async def _call(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except DuplicateKeyError:
            raise Conflict("an image with that id exists", code="image_exists") from None
        except PyMongoError as exc:
            raise Unavailable(f"the metadata database failed ({exc.__class__.__name__})", code="database_unavailable") from exc

    async def insert(self, record: ImageRecord) -> None:
        await self._call(self._images.insert_one(_to_doc(record)))

    async def get(self, collection: str, image_id: str) -> ImageRecord:
        doc = await self._call(self._images.find_one({"_id": _doc_id(collection, image_id)}))
        if doc is None:
            raise NotFound("no image with that id", code="image_not_found")
        return _to_record(doc)

    async def find(self, collection: str, query: ListQuery) -> list[ImageRecord]:
        spec = _filter(collection, query.conditions)
        if query.after is not None:
            op = "$lt" if query.descending else "$gt"
            keyset = {"$or": [{"time": {op: query.after.time}}, {"time": query.after.time, "id": {op: query.after.id}}]}
            spec = {"$and": [spec, keyset]}
        direction = DESCENDING if query.descending else ASCENDING
        cursor = self._images.find(spec).sort([("time", direction), ("id", direction)]).skip(query.skip).limit(query.limit)
        docs = await self._call(cursor.to_list(length=query.limit))
        return [_to_record(doc) for doc in docs]

    async def count(self, collection: str, conditions: tuple[Condition, ...]) -> int:
        return await self._call(self._images.count_documents(_filter(collection, conditions)))

    async def replace_properties(self, record: ImageRecord, expected_version: int) -> ImageRecord | None:
        result = await self._call(
            self._images.update_one(
                {"_id": _doc_id(record.collection, record.id), "version": expected_version},
                {"$set": {"properties": record.properties, "updated_at": record.updated_at, "version": record.version}},
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
        try:
            async for doc in self._images.find(spec).sort("path", ASCENDING).batch_size(500):
                yield _to_record(doc)
        except PyMongoError as exc:
            raise Unavailable(f"the metadata database failed ({exc.__class__.__name__})", code="database_unavailable") from exc

    async def ensure_collection(self, name: str) -> str:
        upsert = {"$setOnInsert": {"generation": secrets.token_hex(8), "state": "active", "created_at": utcnow()}}
        try:
            doc = await self._collections.find_one_and_update(
                {"_id": name}, upsert, upsert=True, return_document=ReturnDocument.AFTER
            )
        except DuplicateKeyError:
            # Two first uploads raced to create the entry; the other one won, so read theirs.
            doc = await self._call(self._collections.find_one({"_id": name}))
        except PyMongoError as exc:
            raise Unavailable(f"the metadata database failed ({exc.__class__.__name__})", code="database_unavailable") from exc
        if doc["state"] != "active":
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
        pipeline = [{"$match": {"collection": name}}, {"$group": {"_id": None, "bytes": {"$sum": "$size"}}}]
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
        try:
            await self._uploads.insert_one({"_id": upload.id, **dataclasses.asdict(upload)})
        except DuplicateKeyError:
            raise Conflict("an upload with that id exists", code="upload_exists") from None
        except PyMongoError as exc:
            raise Unavailable(f"the metadata database failed ({exc.__class__.__name__})", code="database_unavailable") from exc

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
        try:
            await self._idempotency.insert_one({"_id": entry.scope, **dataclasses.asdict(entry)})
            return None
        except DuplicateKeyError:
            pass
        except PyMongoError as exc:
            raise Unavailable(f"the metadata database failed ({exc.__class__.__name__})", code="database_unavailable") from exc
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
