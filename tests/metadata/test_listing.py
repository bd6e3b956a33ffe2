"""Listing at depth, on every backend: keyset pages walk every record once, in order, ties in time
broken by id, alone and scoped to an owner; bulk inserts; and, on SQLite, that each page is an
index range seek (EXPLAIN QUERY PLAN), so a page costs O(page) however deep or large."""

from __future__ import annotations

import secrets
from dataclasses import replace
import sqlite3
from pathlib import Path

import pytest

from gateway.errors import Conflict
from gateway.metadata.base import ImageRecord, MetadataStore
from gateway.metadata.query import Cursor, ListQuery, owned_by
from tests.metadata.test_contract import at, ids, make_record, newest_first


def records_with_ties(count: int) -> list[ImageRecord]:
    # Four records a minute: equal times are common, so the id must break ties.
    return [make_record(time=at(index // 4), owner=f"user{index % 3}") for index in range(count)]


async def walk(store: MetadataStore, query: ListQuery) -> list[ImageRecord]:
    seen: list[ImageRecord] = []
    while True:
        page = await store.find("photos", query)
        seen += page
        if len(page) < query.limit:
            return seen
        query = replace(query, after=Cursor(page[-1].time, page[-1].id))


@pytest.mark.parametrize("descending", [True, False])
@pytest.mark.parametrize("owner", [None, "user1"])
async def test_cursor_pages_walk_every_record_once_in_order(metadata_store: MetadataStore, descending: bool, owner: str | None) -> None:
    records = records_with_ties(130)
    await metadata_store.insert_many(records)
    expected = [r for r in newest_first(records) if owner is None or r.owner == owner]
    if not descending:
        expected.reverse()
    assert ids(await walk(metadata_store, owned_by(ListQuery(limit=20, descending=descending), owner))) == ids(expected)


async def test_insert_many_adds_the_free_ids_and_refuses_a_taken_one(metadata_store: MetadataStore) -> None:
    taken = make_record()
    await metadata_store.insert(taken)
    fresh = [make_record(image_id=secrets.token_hex(12)) for _ in range(3)]
    with pytest.raises(Conflict):
        await metadata_store.insert_many([fresh[0], taken, *fresh[1:]])
    assert {r.id for r in await metadata_store.find("photos", ListQuery(limit=10))} == {taken.id, *(r.id for r in fresh)}
    assert await metadata_store.get("photos", taken.id) == taken
    await metadata_store.insert_many([])


@pytest.mark.embedded
async def test_sqlite_pages_are_index_range_seeks() -> None:
    """Every list query of the API is answered by walking an index from where the page starts:
    the first page, a cursor page, an owner's pages, and the count."""
    from gateway.metadata import sqlite

    queries = {
        "first": ListQuery(limit=51),
        "cursor": ListQuery(limit=51, after=Cursor(at(5), "0" * 24)),
        "ascending cursor": ListQuery(limit=51, descending=False, after=Cursor(at(5), "0" * 24)),
        "owner": owned_by(ListQuery(limit=51), "user1"),
        "owner cursor": owned_by(ListQuery(limit=51, after=Cursor(at(5), "0" * 24)), "user1"),
    }
    db = sqlite3.connect(":memory:")
    for statement in filter(str.strip, ";".join(sqlite.MIGRATIONS).split(";")):
        db.execute(statement)
    for name, query in queries.items():
        sql, params = sqlite.find_sql("photos", query)
        plan = " | ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))
        assert "USING INDEX" in plan and "TEMP B-TREE" not in plan, (name, plan)
        if query.after is not None:
            assert "(time,id)" in plan, (name, plan)  # a seek to the cursor, not a scan from the top
    sql, params = sqlite.count_sql("photos", (), None)
    assert "COVERING INDEX" in " ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))


@pytest.mark.embedded
async def test_a_version_1_database_is_migrated_to_the_owner_index(tmp_path: Path) -> None:
    from gateway.metadata import sqlite

    path = tmp_path / "metadata.sqlite3"
    old = sqlite3.connect(path)
    for statement in filter(str.strip, sqlite.MIGRATIONS[0].split(";")):
        old.execute(statement)
    old.execute("PRAGMA user_version = 1")
    old.commit()
    old.close()
    record = make_record(owner="user1")
    async with sqlite.SqliteMetadataStore(path) as store:
        await store.insert(record)
        assert await store.find("photos", owned_by(ListQuery(), "user1")) == [record]
    migrated = sqlite3.connect(path)
    assert migrated.execute("PRAGMA user_version").fetchone()[0] == len(sqlite.MIGRATIONS) == 4
    assert migrated.execute("SELECT 1 FROM sqlite_master WHERE name = 'images_by_owner'").fetchone()
    # ... and on to the orientation column (issue 9), and the uploads' tables (issue 12).
    assert "orientation" in {row[1] for row in migrated.execute("PRAGMA table_info(images)")}
    assert {"uploads", "idempotency"} <= {row[0] for row in migrated.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


@pytest.mark.embedded
async def test_a_version_3_database_gains_the_uploads_tables_and_keeps_its_records(tmp_path: Path) -> None:
    from gateway.metadata import sqlite
    from tests.metadata.test_contract import pending_upload

    path = tmp_path / "metadata.sqlite3"
    record = make_record(owner="user1")
    async with sqlite.SqliteMetadataStore(path) as store:
        await store.insert(record)
    old = sqlite3.connect(path)
    old.executescript("DROP TABLE uploads; DROP TABLE idempotency; PRAGMA user_version = 3;")
    old.close()
    async with sqlite.SqliteMetadataStore(path) as store:
        assert await store.get(record.collection, record.id) == record
        upload = pending_upload("b" * 32, at(10))
        await store.insert_upload(upload)
        assert await store.get_upload(upload.id) == upload
    # The v4 script is idempotent: run again over its own tables, it changes nothing.
    again = sqlite3.connect(path)
    for statement in filter(str.strip, sqlite.MIGRATIONS[3].split(";")):
        again.execute(statement)
    assert again.execute("SELECT count(*) FROM uploads").fetchone()[0] == 1
    assert again.execute("PRAGMA user_version").fetchone()[0] == 4
