"""`gateway migrate` on MongoDB: records of the one-collection layout of earlier releases
(`images`, `_id` = `<collection>/<id>`, with `collection` and `id` fields) move into one MongoDB
collection per image collection (`mongo.records_collection`).

Run it once with every gateway stopped (the store refuses to open while old records are left).
It is safe to run again and to resume after a crash, at any point:

1. `images` is renamed to `images_moving` (atomic): a writer of the old release that is still
   running puts its records into a new `images`, which the next run moves, never into what is
   being copied and then dropped;
2. every record of `images_moving` is inserted into its collection; one already there (an
   earlier, interrupted run) is left as it is;
3. `images_moving` is dropped, only after every record was read and is in its new place.

`images` itself stays, empty.

A crash before 3 leaves `images_moving`, which the next run copies again (the copies that are
already made are skipped) and then drops; the records are in one place or both, never in none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pymongo.errors import BulkWriteError, OperationFailure

from gateway.config import Config
from gateway.metadata.mongo import LEGACY_RECORDS, STORED_FIELDS, MongoMetadataStore, _duplicates_only, _sort_keys
from gateway.metadata.mongo_client import connect, unavailable_on_failure

MOVING = "images_moving"
BATCH = 1000
_NAMESPACE_NOT_FOUND = 26
_NAMESPACE_EXISTS = 48


@dataclass
class Migration:
    """What one run did: records copied per image collection, and copies an earlier run made."""

    moved: dict[str, int] = field(default_factory=dict)
    already_there: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"moved": sum(self.moved.values()), "already_there": self.already_there, "collections": dict(sorted(self.moved.items()))}


def _new_doc(old: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {"_id": old["id"]}
    doc.update((name, old[name]) for name in STORED_FIELDS if name in old)
    # Releases before sort keys existed did not store them.
    doc["sort_keys"] = old["sort_keys"] if "sort_keys" in old else _sort_keys(old.get("properties") or {})
    return doc


async def _copy(store: MongoMetadataStore, batch: list[dict[str, Any]], done: Migration) -> None:
    by_collection: dict[str, list[dict[str, Any]]] = {}
    for old in batch:
        by_collection.setdefault(old["collection"], []).append(_new_doc(old))
    for collection, docs in by_collection.items():
        await store.ensure_record_indexes(collection, again=False)
        inserted = len(docs)
        try:
            await store.records_of(collection).insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            if not _duplicates_only(exc):
                raise
            inserted = exc.details.get("nInserted", 0)
            done.already_there += len(docs) - inserted
        done.moved[collection] = done.moved.get(collection, 0) + inserted


async def _move(store: MongoMetadataStore, done: Migration) -> None:
    moving = store.db[MOVING]
    batch: list[dict[str, Any]] = []
    # No filter and no sort: FerretDB streams the collection instead of reading it all first.
    async for old in moving.find({}).batch_size(BATCH):
        batch.append(old)
        if len(batch) == BATCH:
            await _copy(store, batch, done)
            batch = []
    if batch:
        await _copy(store, batch, done)
    await moving.drop()


async def migrate(store: MongoMetadataStore) -> Migration:
    """Move every record of the old layout; see the module's docstring."""
    done = Migration()
    db = store.db
    with unavailable_on_failure():
        while True:
            if MOVING in await db.list_collection_names():
                await _move(store, done)
            if not await store.legacy_records():
                break
            try:
                await db[LEGACY_RECORDS].rename(MOVING)
            except OperationFailure as exc:
                # Another run renamed it first (gone), or left its copy to finish (exists): the
                # loop takes up whichever there is.
                if exc.code not in (_NAMESPACE_NOT_FOUND, _NAMESPACE_EXISTS):
                    raise
    # `images` stays, empty, with its old indexes: dropping it could take a record that a
    # still-running old release wrote since the check.
    return done


async def migrate_database(config: Config) -> Migration:
    """`migrate` on the configured database, then the start-up checks the store makes."""
    async with connect(config) as client:
        store = MongoMetadataStore(client, config.metadata.mongodb_db)
        done = await migrate(store)
        await store.prepare()
    return done
