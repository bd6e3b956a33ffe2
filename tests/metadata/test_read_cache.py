"""The MongoDB store's read cache on FerretDB (`metadata.mongo_reads`): two stores on one
database stand for two gateway replicas. Whatever one keeps, a write acknowledged by the other
(insert, batch insert, update, delete, drop) is seen by its next read; reads under an unchanged
revision are answered from memory; a collection without a revision is never cached."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import NotFound
from gateway.metadata import open_metadata_store
from gateway.metadata.mongo import REVISIONS, MongoMetadataStore, records_collection, to_doc
from gateway.metadata.mongo_reads import RevisionCache
from gateway.metadata.query import Condition, ListQuery
from tests.helpers import make_config, mongo_overrides
from tests.metadata.test_contract import at, ids, make_record, newest_first

pytestmark = pytest.mark.peers


@pytest.fixture
async def replicas(ferretdb: Any, tmp_path: Path) -> AsyncIterator[tuple[MongoMetadataStore, MongoMetadataStore]]:
    config = make_config(tmp_path, mongo_overrides(ferretdb.url))
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(open_metadata_store(config))
        b = await stack.enter_async_context(open_metadata_store(config))
        assert isinstance(a, MongoMetadataStore) and isinstance(b, MongoMetadataStore)
        yield a, b


def reads(store: MongoMetadataStore) -> RevisionCache:
    assert store.reads is not None, "FerretDB: the store caches"
    return store.reads


async def test_reads_under_an_unchanged_revision_are_answered_from_memory(replicas: Any) -> None:
    a, b = replicas
    records = [make_record("cached", time=at(i)) for i in range(5)]
    await b.insert_many(records)
    first = await a.find("cached", ListQuery(limit=3))
    hits = reads(a).hits
    again = await a.find("cached", ListQuery(limit=3))
    assert ids(again) == ids(first) == ids(newest_first(records)[:3])
    assert await a.get("cached", records[0].id) == await a.get("cached", records[0].id) == records[0]
    assert await a.count("cached", ()) == await a.count("cached", ()) == 5
    assert reads(a).hits == hits + 3
    # A caller may change its copy of a page without changing what the next caller is handed.
    again.clear()
    assert ids(await a.find("cached", ListQuery(limit=3))) == ids(first)


async def test_every_write_on_another_replica_is_seen_by_the_next_read(replicas: Any) -> None:
    a, b = replicas
    first, second = make_record("seen", time=at(1), properties={"k": 1}), make_record("seen", time=at(2))
    await b.ensure_collection("seen")
    await b.insert(first)
    newest = ListQuery(limit=10)
    assert ids(await a.find("seen", newest)) == [first.id]
    assert await a.count("seen", ()) == 1

    await b.insert(second)
    assert ids(await a.find("seen", newest)) == [second.id, first.id]
    assert await a.count("seen", ()) == 2

    third = make_record("seen", time=at(3))
    await b.insert_many([third])
    assert ids(await a.find("seen", newest)) == [third.id, second.id, first.id]

    assert (await a.get("seen", first.id)).properties == {"k": 1}
    updated = first.with_properties({"k": 2}, at(4))
    assert await b.replace_properties(updated, first.version) == updated
    assert (await a.get("seen", first.id)).properties == {"k": 2}
    assert ids(await a.find("seen", ListQuery(conditions=(Condition("k", "$eq", 2),)))) == [first.id]

    stats = await a.collection_stats("seen")
    assert (stats.documents, stats.bytes) == (3, 300)

    await b.delete("seen", second.id)
    stats = await a.collection_stats("seen")
    assert (stats.documents, stats.bytes) == (2, 200)
    with pytest.raises(NotFound):
        await a.get("seen", second.id)
    assert ids(await a.find("seen", newest)) == [third.id, first.id]

    await b.delete_records("seen")
    assert await a.find("seen", newest) == []
    assert await a.count("seen", ()) == 0
    with pytest.raises(NotFound):
        await a.get("seen", first.id)


async def test_a_batch_that_partly_failed_is_still_a_change(replicas: Any) -> None:
    a, b = replicas
    taken = make_record("batch", time=at(1))
    await b.insert(taken)
    assert ids(await a.find("batch", ListQuery())) == [taken.id]
    fresh = make_record("batch", time=at(2))
    with pytest.raises(Exception):
        await b.insert_many([taken, fresh])
    assert ids(await a.find("batch", ListQuery())) == [fresh.id, taken.id]


async def test_concurrent_writes_are_all_seen_once_acknowledged(replicas: Any) -> None:
    """FerretDB may lose one of two concurrent revision writes; each leaves a new value all the same."""
    a, b = replicas
    records = [make_record("busy", time=at(i)) for i in range(24)]
    reader_done = asyncio.Event()

    async def keep_reading() -> None:
        while not reader_done.is_set():
            await a.find("busy", ListQuery(limit=50))
            await a.count("busy", ())

    reader = asyncio.create_task(keep_reading())
    try:
        await asyncio.gather(*(b.insert(record) for record in records))
    finally:
        reader_done.set()
        await reader
    assert ids(await a.find("busy", ListQuery(limit=50))) == ids(newest_first(records))
    assert await a.count("busy", ()) == 24


async def test_a_collection_without_a_revision_is_read_from_the_database_every_time(replicas: Any) -> None:
    a, _ = replicas
    # Records written without the store (by hand, or by a process that writes no revisions).
    raw = a.db[records_collection("bare")]
    first = make_record("bare", time=at(1))
    await raw.insert_one(to_doc(first))
    assert ids(await a.find("bare", ListQuery())) == [first.id]
    second = make_record("bare", time=at(2))
    await raw.insert_one(to_doc(second))
    assert ids(await a.find("bare", ListQuery())) == [second.id, first.id]
    assert await a.db[REVISIONS].find_one({"_id": "bare"}) is None


async def test_an_unchanged_revision_still_expires_what_was_kept(ferretdb: Any, tmp_path: Path) -> None:
    """A write whose revision change failed reports the failure; what was kept before it lasts at
    most the entries' lifetime."""
    config = make_config(tmp_path, mongo_overrides(ferretdb.url))
    async with open_metadata_store(config) as store:
        assert isinstance(store, MongoMetadataStore)
        now = [0.0]
        store.reads = RevisionCache(store.db[REVISIONS], lifetime=10, clock=lambda: now[0])
        kept = make_record("stale", time=at(1))
        await store.insert(kept)
        assert ids(await store.find("stale", ListQuery())) == [kept.id]
        missed = make_record("stale", time=at(2))
        await store.db[records_collection("stale")].insert_one(to_doc(missed))  # no revision change
        assert ids(await store.find("stale", ListQuery())) == [kept.id]
        now[0] = 10.0
        assert ids(await store.find("stale", ListQuery())) == [missed.id, kept.id]


async def test_the_cache_keeps_at_most_its_bound(ferretdb: Any, tmp_path: Path) -> None:
    config = make_config(tmp_path, mongo_overrides(ferretdb.url))
    async with open_metadata_store(config) as store:
        assert isinstance(store, MongoMetadataStore)
        store.reads = RevisionCache(store.db[REVISIONS], max_records=3)
        records = [make_record("bound", time=at(i)) for i in range(5)]
        await store.insert_many(records)
        for record in records:
            assert await store.get("bound", record.id) == record
        assert len(store.reads) == 3
        # A page holds its records: two of them leave room for one get.
        await store.find("bound", ListQuery(limit=2))
        assert len(store.reads) == 2
        await store.find("bound", ListQuery(limit=4))
        assert len(store.reads) == 0, "a page larger than the bound is not kept"


async def test_without_the_cache_no_revision_is_written(ferretdb: Any, tmp_path: Path) -> None:
    """MongoDB's indexes answer reads for about what a revision read costs: there the store
    neither keeps reads nor writes revisions (here forced off on FerretDB)."""
    config = make_config(tmp_path, mongo_overrides(ferretdb.url))
    async with open_metadata_store(config) as opened:
        assert isinstance(opened, MongoMetadataStore)
        store = MongoMetadataStore(opened._client, config.metadata.mongodb_db, read_cache=False)
        await store.prepare()
        assert store.reads is None
        record = make_record("plain", time=at(1))
        await store.insert(record)
        assert await store.get("plain", record.id) == record
        assert ids(await store.find("plain", ListQuery())) == [record.id]
        assert await store.db[REVISIONS].find_one({"_id": "plain"}) is None


async def test_concurrent_first_reads_share_one_load(replicas: Any) -> None:
    a, b = replicas
    records = [make_record("herd", time=at(i)) for i in range(30)]
    await b.insert_many(records)
    misses = reads(a).misses
    pages = await asyncio.gather(*(a.find("herd", ListQuery(limit=10)) for _ in range(16)))
    assert all(ids(page) == ids(newest_first(records)[:10]) for page in pages)
    # The first reader reads the revision alone; the rest share the next read of it.
    assert reads(a).misses - misses <= 2

    loads = [0]
    release = asyncio.Event()

    async def slow() -> list[Any]:
        loads[0] += 1
        await release.wait()
        return ["page"]

    readers = [asyncio.create_task(reads(a).read("herd", "slow", slow)) for _ in range(6)]
    while reads(a).shared < 5 and loads[0] < 6:
        await asyncio.sleep(0.01)
    readers[0].cancel()  # one reader leaving does not cancel the load for the others
    release.set()
    assert await asyncio.gather(*readers[1:]) == [["page"]] * 5
    assert loads[0] == 1

    # An error reaches every reader of that load, and the next read loads again.
    failing = [0]
    fail = asyncio.Event()

    async def broken() -> list[Any]:
        failing[0] += 1
        await fail.wait()
        raise RuntimeError("down")

    await b.insert(make_record("herd", time=at(99)))
    shared = reads(a).shared
    waiting = [asyncio.create_task(reads(a).read("herd", "k", broken)) for _ in range(4)]
    while reads(a).shared < shared + 3:
        await asyncio.sleep(0.01)
    fail.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(result, RuntimeError) for result in results) and failing[0] == 1
    with pytest.raises(RuntimeError):
        await reads(a).read("herd", "k", broken)
    assert failing[0] == 2
