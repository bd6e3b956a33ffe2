"""`gateway migrate` on FerretDB: records that earlier releases kept in one MongoDB collection
(`images`, `_id` = `<collection>/<id>`) move to one collection per image collection, readable
and listable as before; the store refuses to open until they have; a second run, or one after a
crash at any step, finishes the job without losing or doubling a record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from gateway.config import Config
from gateway.errors import Unavailable
from gateway.metadata import migrate_metadata, open_metadata_store
from gateway.metadata.base import RECORD_FIELDS, ImageRecord
from gateway.metadata.mongo import LEGACY_RECORDS, _sort_keys, records_collection, to_doc
from gateway.metadata.mongo_migrate import MOVING
from gateway.metadata.query import Cursor, ListQuery, SortKey
from tests.helpers import make_config, mongo_overrides
from tests.metadata.test_contract import at, ids, make_record, newest_first

pytestmark = pytest.mark.peers


def legacy_doc(record: ImageRecord, *, sort_keys: bool = True) -> dict[str, Any]:
    """The document the one-collection layout stored (before sort keys existed, without them)."""
    doc: dict[str, Any] = {name: getattr(record, name) for name in RECORD_FIELDS}
    doc["_id"] = f"{record.collection}/{record.id}"
    if sort_keys:
        doc["sort_keys"] = _sort_keys(record.properties)
    return doc


@pytest.fixture
def config(ferretdb: Any, tmp_path: Path) -> Config:
    return make_config(tmp_path, mongo_overrides(ferretdb.url))


@pytest.fixture
async def raw(config: Config) -> AsyncIterator[Any]:
    """The database, through a client of its own."""
    assert config.metadata.mongodb_url is not None
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(config.metadata.mongodb_url.reveal(), tz_aware=True)
    yield client[config.metadata.mongodb_db]
    await client.close()


def old_records() -> list[ImageRecord]:
    photos = [make_record("photos", time=at(i % 5), properties={"k": i % 3, "tag": "x" if i % 2 else ["y", i]}) for i in range(30)]
    # The same id in two collections: unique per collection, as before.
    twin = make_record("images", image_id=photos[0].id, time=at(9), owner="ann")
    return photos + [twin] + [make_record("a.b", time=at(i), owner="bob" if i % 2 else None) for i in range(7)]


async def write_old_layout(raw: Any, records: list[ImageRecord]) -> None:
    await raw[LEGACY_RECORDS].insert_many([legacy_doc(r, sort_keys=i % 4 != 0) for i, r in enumerate(records)])
    await raw["collections"].insert_many(
        [{"_id": name, "generation": f"g-{name}", "state": "active", "created_at": at(0)} for name in sorted({r.collection for r in records})]
    )


async def assert_readable_and_listable(config: Config, records: list[ImageRecord]) -> None:
    async with open_metadata_store(config) as store:
        for record in records:
            assert await store.get(record.collection, record.id) == record
        photos = [r for r in records if r.collection == "photos"]
        # Keyset pages, 7 at a time, cover the collection once, newest first.
        pages: list[ImageRecord] = []
        after = None
        while True:
            page = await store.find("photos", ListQuery(limit=7, after=after))
            pages += page
            if len(page) < 7:
                break
            after = Cursor(page[-1].time, page[-1].id)
        assert ids(pages) == ids(newest_first(photos))
        assert await store.count("photos", ()) == len(photos)
        assert ids(await store.find("a.b", ListQuery(owner="bob"))) == ids(newest_first([r for r in records if r.owner == "bob"]))
        # Sort keys made for the records stored without them.
        by_k = await store.find("photos", ListQuery(limit=100, sort=(SortKey("k", True),)))
        assert [r.properties["k"] for r in by_k] == sorted((r.properties["k"] for r in photos), reverse=True)
        streamed = [record async for record in store.records()]
        assert [r.path for r in streamed] == sorted(r.path for r in records)
        assert await store.collections() == sorted({r.collection for r in records})
        assert await store.collection_generation("photos") == "g-photos"


async def test_old_records_are_readable_and_listable_after_migrating(config: Config, raw: Any) -> None:
    records = old_records()
    await write_old_layout(raw, records)
    with pytest.raises(Unavailable) as refused:
        async with open_metadata_store(config):
            pass
    assert refused.value.code == "migration_required" and "gateway migrate" in refused.value.message

    done = await migrate_metadata(config)

    assert done == {"moved": len(records), "already_there": 0, "collections": {"a.b": 7, "images": 1, "photos": 30}}
    await assert_readable_and_listable(config, records)
    assert await raw[LEGACY_RECORDS].count_documents({}) == 0
    assert MOVING not in await raw.list_collection_names()
    # Each collection's records are keyed by id alone, and have every index a page needs.
    assert await raw[records_collection("images")].find_one({"_id": records[0].id}) is not None
    names = {index["name"] async for index in await raw[records_collection("photos")].list_indexes()}
    assert {"time_id", "owner_time_id", "path", "sha256"} <= names

    # Again: nothing to do, nothing changes.
    assert await migrate_metadata(config) == {"moved": 0, "already_there": 0, "collections": {}}
    await assert_readable_and_listable(config, records)


async def test_a_run_interrupted_after_copying_part_resumes(config: Config, raw: Any) -> None:
    records = old_records()
    await write_old_layout(raw, records)
    # As a run that crashed in the middle of step 2 leaves it: renamed, a third copied.
    await raw[LEGACY_RECORDS].rename(MOVING)
    copied = records[::3]
    for record in copied:
        await raw[records_collection(record.collection)].insert_one(to_doc(record))
    # And an old release, still running, wrote one more into a new `images`.
    late = make_record("photos", time=at(20), properties={"k": 5})
    await raw[LEGACY_RECORDS].insert_one(legacy_doc(late))

    done = await migrate_metadata(config)

    assert done["moved"] == len(records) + 1 - len(copied) and done["already_there"] == len(copied)
    await assert_readable_and_listable(config, records + [late])
    async with open_metadata_store(config) as store:
        assert await store.count("photos", ()) == 31


async def test_a_run_interrupted_before_dropping_the_copy_resumes(config: Config, raw: Any) -> None:
    records = old_records()
    await write_old_layout(raw, records)
    await raw[LEGACY_RECORDS].rename(MOVING)
    for record in records:
        await raw[records_collection(record.collection)].insert_one(to_doc(record))

    assert await migrate_metadata(config) == {"moved": 0, "already_there": len(records), "collections": {"a.b": 0, "images": 0, "photos": 0}}
    await assert_readable_and_listable(config, records)


def gateway(config: Config, *argv: str) -> subprocess.CompletedProcess[str]:
    assert config.metadata.mongodb_url is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MONGODB_", "S3_", "GATEWAY_", "APP_", "METADATA_"))}
    env.update(DATA_DIR=str(config.data_dir), MONGODB_URL=config.metadata.mongodb_url.reveal(), MONGODB_DB=config.metadata.mongodb_db)
    return subprocess.run([sys.executable, "-m", "gateway", *argv], capture_output=True, text=True, env=env, timeout=120)


async def test_serve_refuses_old_records_until_gateway_migrate(config: Config, raw: Any) -> None:
    records = old_records()
    await write_old_layout(raw, records)

    refused = gateway(config, "serve", "--port", "0")
    assert refused.returncode != 0 and "gateway migrate" in refused.stderr

    migrated = gateway(config, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert json.loads(migrated.stdout)["moved"] == len(records)
    await assert_readable_and_listable(config, records)
