"""The `MetadataStore` contract, run against every backend through the `metadata_store` fixture.

Filter semantics follow MongoDB's; the tables below are what MongoDB answers, and every backend
must answer the same.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from gateway.config import Config
from gateway.errors import Conflict, NotFound, Unavailable
from gateway.metadata import open_metadata_store
from gateway.metadata.base import ImageRecord, MetadataStore
from gateway.storage.base import object_key
from gateway.api.params import parse_filter
from gateway.metadata.query import Cursor, ListQuery
from tests.protocols import assert_implements

BASE = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def at(minutes: float) -> datetime:
    return BASE + timedelta(minutes=minutes)


def iso(minutes: float) -> str:
    return at(minutes).isoformat().replace("+00:00", "Z")


def make_record(
    collection: str = "photos",
    *,
    time: datetime | None = None,
    properties: dict[str, Any] | None = None,
    image_id: str | None = None,
    size: int = 100,
    owner: str | None = None,
    updated_at: datetime | None = None,
    version: int = 1,
) -> ImageRecord:
    image_id = image_id or secrets.token_hex(12)
    time = time or BASE
    return ImageRecord(
        collection=collection,
        id=image_id,
        image=f"{image_id}.png",
        time=time,
        updated_at=updated_at or time,
        content_type="image/png",
        format="png",
        width=32,
        height=24,
        size=size,
        sha256=secrets.token_hex(32),
        path=object_key(collection, image_id, "png"),
        properties=properties if properties is not None else {},
        owner=owner,
        version=version,
    )


def newest_first(records: list[ImageRecord]) -> list[ImageRecord]:
    return sorted(records, key=lambda r: (r.time, r.id), reverse=True)


def ids(records: list[ImageRecord]) -> list[str]:
    return [record.id for record in records]


async def insert_all(store: MetadataStore, records: list[ImageRecord], batch: int = 50) -> None:
    for start in range(0, len(records), batch):
        await asyncio.gather(*(store.insert(record) for record in records[start : start + batch]))


async def test_the_backend_implements_the_protocol(metadata_store: MetadataStore) -> None:
    assert_implements(metadata_store, MetadataStore)


# --- records ----------------------------------------------------------------------------------


async def test_insert_get_round_trip_preserves_every_field(metadata_store: MetadataStore) -> None:
    record = make_record(
        time=datetime(2023, 12, 31, 23, 59, 59, 123000, tzinfo=timezone.utc),
        updated_at=datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc),
        properties={
            "title": "Grüße 東京 \"q\"",
            "count": 3,
            "ratio": 0.25,
            "whole": 2.0,
            "big": 2**53,
            "flag": False,
            "nothing": None,
            "tags": ["a", 1, True, None, 1.5],
            "nested": {"deeper": {"list": [{"k": "v"}, {}], "empty": {}}},
        },
        owner="user-42",
        version=7,
    )
    await metadata_store.insert(record)
    stored = await metadata_store.get(record.collection, record.id)
    assert stored == record
    for moment in (stored.time, stored.updated_at):
        assert moment.utcoffset() == timedelta(0)
    # Equal is not enough for JSON: 2.0 must stay a float, key order must hold.
    assert json.dumps(stored.properties) == json.dumps(record.properties)
    assert (await metadata_store.get(record.collection, record.id)) == record


async def test_nested_arrays_round_trip(metadata_store: MetadataStore, request: pytest.FixtureRequest) -> None:
    if request.node.callspec.params["metadata_store"] == "ferretdb":
        # FerretDB 1.x answers WriteError code 2: "nested arrays are not supported"; MongoDB stores them.
        request.applymarker(pytest.mark.xfail(raises=Unavailable, strict=True, reason="FerretDB rejects nested arrays"))
    record = make_record(properties={"grid": [[1, 2], [3, [4]]], "mixed": [{"k": []}]})
    await metadata_store.insert(record)
    assert (await metadata_store.get(record.collection, record.id)).properties == record.properties


async def test_times_keep_milliseconds_like_mongodb(metadata_store: MetadataStore) -> None:
    # MongoDB keeps milliseconds; every backend stores and compares the same value.
    precise = datetime(2024, 5, 1, 12, 0, 0, 123987, tzinfo=timezone.utc)
    record = make_record(time=precise, updated_at=precise)
    await metadata_store.insert(record)
    stored = await metadata_store.get(record.collection, record.id)
    assert stored.time == precise.replace(microsecond=123000)
    assert stored.updated_at == precise.replace(microsecond=123000)
    # A bound with microseconds is cut to its millisecond as well.
    bounds = {"$gte": 1, "$lte": 1, "$eq": 1, "$gt": 0, "$lt": 0, "$ne": 0}
    for op, expected in bounds.items():
        conditions = parse_filter(json.dumps({"time": {op: "2024-05-01T12:00:00.123500Z"}}))
        assert await metadata_store.count("photos", conditions) == expected, op


async def test_a_time_in_another_zone_is_the_same_instant(metadata_store: MetadataStore) -> None:
    local = datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    record = make_record(time=local)
    await metadata_store.insert(record)
    stored = await metadata_store.get(record.collection, record.id)
    assert stored.time == local and stored.time.utcoffset() == timedelta(0)


async def test_duplicate_insert_conflicts(metadata_store: MetadataStore) -> None:
    record = make_record(properties={"v": 1})
    await metadata_store.insert(record)
    with pytest.raises(Conflict):
        await metadata_store.insert(make_record(image_id=record.id, properties={"v": 2}))
    assert (await metadata_store.get("photos", record.id)).properties == {"v": 1}
    # Ids are unique per collection, not globally.
    await metadata_store.insert(make_record("other", image_id=record.id))


async def test_get_missing_is_not_found(metadata_store: MetadataStore) -> None:
    record = make_record()
    await metadata_store.insert(record)
    with pytest.raises(NotFound):
        await metadata_store.get("photos", secrets.token_hex(12))
    with pytest.raises(NotFound):
        await metadata_store.get("other", record.id)


# --- ordering and paging ----------------------------------------------------------------------


@pytest.fixture
async def timeline(metadata_store: MetadataStore) -> list[ImageRecord]:
    """Nine records with ties on time, inserted out of order, plus one in another collection."""
    minutes = [0, 1, 1, 1, 2, 3, 3, 4, 5]
    records = [make_record(time=at(m), properties={"even": m % 2 == 0}) for m in minutes]
    shuffled = records[3:] + records[:3]
    await insert_all(metadata_store, shuffled)
    await metadata_store.insert(make_record("elsewhere", time=at(2)))
    return records


async def test_find_orders_newest_first_with_ties_by_id(metadata_store: MetadataStore, timeline: list[ImageRecord]) -> None:
    found = await metadata_store.find("photos", ListQuery(limit=100))
    assert ids(found) == ids(newest_first(timeline))


async def test_find_orders_oldest_first_with_ties_by_id(metadata_store: MetadataStore, timeline: list[ImageRecord]) -> None:
    found = await metadata_store.find("photos", ListQuery(limit=100, descending=False))
    assert ids(found) == ids(newest_first(timeline)[::-1])


@pytest.mark.parametrize("descending", [True, False], ids=["newest", "oldest"])
@pytest.mark.parametrize(("skip", "limit"), [(0, 1), (0, 4), (2, 3), (7, 5), (9, 2), (20, 1)])
async def test_skip_and_limit(
    metadata_store: MetadataStore, timeline: list[ImageRecord], skip: int, limit: int, descending: bool
) -> None:
    expected = newest_first(timeline) if descending else newest_first(timeline)[::-1]
    found = await metadata_store.find("photos", ListQuery(limit=limit, skip=skip, descending=descending))
    assert ids(found) == ids(expected[skip : skip + limit])


@pytest.mark.parametrize("descending", [True, False], ids=["newest", "oldest"])
@pytest.mark.parametrize("page_size", [1, 2, 4, 9, 10])
async def test_keyset_pages_cover_everything_once(
    metadata_store: MetadataStore, timeline: list[ImageRecord], page_size: int, descending: bool
) -> None:
    expected = newest_first(timeline) if descending else newest_first(timeline)[::-1]
    seen: list[ImageRecord] = []
    after = None
    for _ in range(len(timeline) + 2):
        page = await metadata_store.find("photos", ListQuery(limit=page_size, descending=descending, after=after))
        seen += page
        if len(page) < page_size:
            break
        after = Cursor(time=page[-1].time, id=page[-1].id)
    assert ids(seen) == ids(expected)


@pytest.mark.parametrize("descending", [True, False], ids=["newest", "oldest"])
async def test_keyset_pages_with_a_filter(metadata_store: MetadataStore, timeline: list[ImageRecord], descending: bool) -> None:
    even = [r for r in timeline if r.properties["even"]]
    expected = newest_first(even) if descending else newest_first(even)[::-1]
    conditions = parse_filter('{"even": true}')
    seen: list[ImageRecord] = []
    after = None
    while True:
        page = await metadata_store.find("photos", ListQuery(conditions, limit=2, descending=descending, after=after))
        seen += page
        if len(page) < 2:
            break
        after = Cursor(time=page[-1].time, id=page[-1].id)
    assert ids(seen) == ids(expected)


async def test_count(metadata_store: MetadataStore, timeline: list[ImageRecord]) -> None:
    assert await metadata_store.count("photos", ()) == len(timeline)
    assert await metadata_store.count("photos", parse_filter('{"even": true}')) == sum(r.properties["even"] for r in timeline)
    assert await metadata_store.count("elsewhere", ()) == 1
    assert await metadata_store.count("nothing", ()) == 0


async def test_count_follows_inserts_deletes_and_drops(metadata_store: MetadataStore) -> None:
    await metadata_store.ensure_collection("photos")
    records = [make_record("photos", size=i) for i in range(40)]
    await insert_all(metadata_store, records)
    await insert_all(metadata_store, [make_record("beside") for _ in range(3)])
    for record in records[:15]:
        await metadata_store.delete(record.collection, record.id)
    assert await metadata_store.count("photos", ()) == 25
    assert (await metadata_store.collection_stats("photos")).documents == 25
    assert await metadata_store.delete_records("photos") == 25
    assert await metadata_store.count("photos", ()) == 0
    assert await metadata_store.count("beside", ()) == 3
    await metadata_store.insert(records[0])
    assert await metadata_store.count("photos", ()) == 1


# --- filter semantics -------------------------------------------------------------------------

ODD_KEY = "q\"uote 'key' with spaces ü 空"

FILTER_RECORDS: dict[str, dict[str, Any]] = {
    "red": {"color": "red", "n": 5, "f": 2.5, "flag": True, "tags": ["a", "b"], "nil": None},
    "blue": {"color": "blue", "n": 10, "f": 0.5, "flag": False, "tags": ["b", "c"], "mixed": "5"},
    "green": {"color": "green", "n": 7.5, "tags": [], "nil": "x", "mixed": 5},
    "bare": {},
    "multi": {"color": ["red", "green"], "n": [1, 20], "tags": "a", "flags": [False, None]},
    "odd": {ODD_KEY: "yes", "with space": 1, "mixed": [True, "5"]},
}
NAMES = list(FILTER_RECORDS)
TIMES = {name: at(index) for index, name in enumerate(NAMES)}  # red at +0, blue +1, ... odd +5
ALL = set(NAMES)


def but(*names: str) -> set[str]:
    return ALL - set(names)


FILTERS: list[tuple[dict[str, Any], set[str]]] = [
    # strings
    ({"color": "red"}, {"red", "multi"}),
    ({"color": {"$eq": "blue"}}, {"blue"}),
    ({"color": {"$ne": "red"}}, but("red", "multi")),
    ({"color": {"$gt": "green"}}, {"red", "multi"}),
    ({"color": {"$gte": "green"}}, {"red", "green", "multi"}),
    ({"color": {"$lt": "green"}}, {"blue"}),
    ({"color": {"$lte": "blue"}}, {"blue"}),
    ({"color": {"$in": ["blue", "green"]}}, {"blue", "green", "multi"}),
    ({"color": {"$nin": ["red", "blue"]}}, {"green", "bare", "odd"}),
    ({"color": {"$in": []}}, set()),
    ({"color": {"$nin": []}}, ALL),
    ({"color": {"$exists": True}}, {"red", "blue", "green", "multi"}),
    ({"color": {"$exists": False}}, {"bare", "odd"}),
    ({"color": "Red"}, set()),
    # integers and floats compare as numbers
    ({"n": 5}, {"red"}),
    ({"n": 5.0}, {"red"}),
    ({"n": 7.5}, {"green"}),
    ({"n": {"$gt": 5}}, {"blue", "green", "multi"}),
    ({"n": {"$gte": 10}}, {"blue", "multi"}),
    ({"n": {"$lt": 5}}, {"multi"}),
    ({"n": {"$lte": 7.5}}, {"red", "green", "multi"}),
    ({"n": {"$ne": 5}}, but("red")),
    ({"n": {"$in": [1, 10]}}, {"blue", "multi"}),
    ({"n": {"$nin": [5, 7.5]}}, {"blue", "bare", "multi", "odd"}),
    ({"n": {"$gt": 1, "$lt": 20}}, {"red", "blue", "green", "multi"}),
    ({"n": {"$gt": 5, "$lt": 10}}, {"green", "multi"}),
    ({"f": 2.5}, {"red"}),
    ({"f": {"$lt": 1}}, {"blue"}),
    ({"f": {"$gte": 0.5}}, {"red", "blue"}),
    ({"f": {"$gt": -1e300}}, {"red", "blue"}),
    # booleans are their own type
    ({"flag": True}, {"red"}),
    ({"flag": False}, {"blue"}),
    ({"flag": {"$ne": True}}, but("red")),
    ({"flag": {"$gt": False}}, {"red"}),
    ({"flag": {"$lte": True}}, {"red", "blue"}),
    ({"flag": 1}, set()),
    ({"flag": 0}, set()),
    ({"flag": "true"}, set()),
    ({"n": True}, set()),
    ({"flag": {"$in": [True, 1]}}, {"red"}),
    # null matches null and missing
    ({"nil": None}, but("green")),
    ({"nil": {"$eq": None}}, but("green")),
    ({"nil": {"$ne": None}}, {"green"}),
    ({"nil": {"$in": [None]}}, but("green")),
    ({"nil": {"$in": [None, "x"]}}, ALL),
    ({"nil": {"$nin": [None]}}, {"green"}),
    ({"nil": {"$exists": True}}, {"red", "green"}),
    ({"nil": {"$exists": False}}, but("red", "green")),
    ({"nil": {"$gt": None}}, set()),
    ({"nil": {"$lt": None}}, set()),
    ({"nil": {"$gt": "a"}}, {"green"}),
    ({"flags": None}, ALL),
    ({"flags": False}, {"multi"}),
    ({"flags": {"$ne": None}}, set()),
    # arrays match when any element does
    ({"tags": "a"}, {"red", "multi"}),
    ({"tags": "b"}, {"red", "blue"}),
    ({"tags": {"$ne": "b"}}, but("red", "blue")),
    ({"tags": {"$gt": "b"}}, {"blue"}),
    ({"tags": {"$lt": "b"}}, {"red", "multi"}),
    ({"tags": {"$in": ["c", "z"]}}, {"blue"}),
    ({"tags": {"$nin": ["a"]}}, {"blue", "green", "bare", "odd"}),
    ({"tags": {"$exists": True}}, {"red", "blue", "green", "multi"}),
    ({"n": 20}, {"multi"}),
    ({"n": {"$nin": [1]}}, but("multi")),
    # numbers never match strings
    ({"mixed": 5}, {"green"}),
    ({"mixed": "5"}, {"blue", "odd"}),
    ({"mixed": {"$gt": 1}}, {"green"}),
    ({"mixed": {"$gt": "1"}}, {"blue", "odd"}),
    ({"mixed": {"$in": [5]}}, {"green"}),
    ({"mixed": {"$ne": 5}}, but("green")),
    ({"mixed": True}, {"odd"}),
    ({"color": {"$gt": 0}}, set()),
    ({"n": {"$lt": "z"}}, set()),
    # keys that are not identifiers
    ({ODD_KEY: "yes"}, {"odd"}),
    ({ODD_KEY: {"$exists": False}}, but("odd")),
    ({"with space": {"$gte": 1}}, {"odd"}),
    ({"with space": {"$lt": 1}}, set()),
    # several fields all apply
    ({"color": "red", "n": 5}, {"red"}),
    ({"color": "red", "n": {"$gt": 5}}, {"multi"}),
    ({"tags": "a", "nil": None}, {"red", "multi"}),
    # time
    ({"time": iso(1)}, {"blue"}),
    ({"time": {"$eq": iso(1)}}, {"blue"}),
    ({"time": {"$ne": iso(1)}}, but("blue")),
    ({"time": {"$gt": iso(3)}}, {"multi", "odd"}),
    ({"time": {"$gte": iso(3)}}, {"bare", "multi", "odd"}),
    ({"time": {"$lt": iso(1)}}, {"red"}),
    ({"time": {"$lte": iso(1)}}, {"red", "blue"}),
    ({"time": {"$gte": iso(1), "$lt": iso(3)}}, {"blue", "green"}),
    ({"time": {"$in": [iso(0), iso(5), iso(9)]}}, {"red", "odd"}),
    ({"time": {"$nin": [iso(0), iso(5)]}}, but("red", "odd")),
    ({"time": {"$in": []}}, set()),
    ({"time": {"$exists": True}}, ALL),
    ({"time": {"$exists": False}}, set()),
    ({"time": {"$gt": "2024-05-01T14:00:30+02:00"}}, but("red")),
    ({"time": {"$gte": iso(2)}, "color": "green"}, {"green", "multi"}),
]


@pytest.fixture
async def filter_records(metadata_store: MetadataStore) -> dict[str, str]:
    """The records of FILTER_RECORDS, and an identical decoy set in another collection; name -> id."""
    named = {name: make_record("things", time=TIMES[name], properties=props) for name, props in FILTER_RECORDS.items()}
    decoys = [make_record("decoys", time=TIMES[name], properties=props) for name, props in FILTER_RECORDS.items()]
    await insert_all(metadata_store, [*named.values(), *decoys])
    return {record.id: name for name, record in named.items()}


@pytest.mark.parametrize(("spec", "expected"), FILTERS, ids=[json.dumps(spec, ensure_ascii=False) for spec, _ in FILTERS])
async def test_filter_semantics(
    metadata_store: MetadataStore, filter_records: dict[str, str], spec: dict[str, Any], expected: set[str]
) -> None:
    conditions = parse_filter(json.dumps(spec))
    found = await metadata_store.find("things", ListQuery(conditions, limit=100))
    assert sorted(filter_records[record.id] for record in found) == sorted(expected)
    assert await metadata_store.count("things", conditions) == len(expected)
    # Filtered results keep their order.
    assert [TIMES[filter_records[record.id]] for record in found] == sorted((TIMES[name] for name in expected), reverse=True)


# --- updates and deletes ----------------------------------------------------------------------


async def test_replace_properties_is_conditional_on_the_version(metadata_store: MetadataStore) -> None:
    record = make_record(properties={"a": 1, "b": [1, 2]})
    await metadata_store.insert(record)
    later = datetime(2025, 1, 1, 0, 0, 0, 500000, tzinfo=timezone.utc)

    updated = record.with_properties({"a": 2, "c": "new"}, later)
    assert await metadata_store.replace_properties(updated, expected_version=1) == updated
    stored = await metadata_store.get("photos", record.id)
    assert stored == updated and stored.version == 2 and stored.updated_at == later
    assert stored.time == record.time and stored.sha256 == record.sha256

    # A concurrent update that read version 1 loses, and changes nothing.
    stale = record.with_properties({"lost": True}, later + timedelta(seconds=1))
    assert await metadata_store.replace_properties(stale, expected_version=1) is None
    assert await metadata_store.get("photos", record.id) == updated

    again = updated.with_properties({}, later + timedelta(seconds=2))
    assert await metadata_store.replace_properties(again, expected_version=2) == again
    assert (await metadata_store.get("photos", record.id)).properties == {}

    await metadata_store.delete("photos", record.id)
    with pytest.raises(NotFound):
        await metadata_store.replace_properties(again.with_properties({"x": 1}, later), expected_version=3)


async def test_replace_properties_changes_what_filters_see(metadata_store: MetadataStore) -> None:
    record = make_record(properties={"state": "draft"})
    await metadata_store.insert(record)
    await metadata_store.replace_properties(record.with_properties({"state": ["published", "x"]}, BASE), expected_version=1)
    assert await metadata_store.count("photos", parse_filter('{"state": "draft"}')) == 0
    assert await metadata_store.count("photos", parse_filter('{"state": "published"}')) == 1


async def test_delete_returns_the_record_then_not_found(metadata_store: MetadataStore) -> None:
    record = make_record(properties={"keep": "me"}, owner="o")
    other = make_record()
    await insert_all(metadata_store, [record, other])
    assert await metadata_store.delete("photos", record.id) == record
    with pytest.raises(NotFound):
        await metadata_store.get("photos", record.id)
    with pytest.raises(NotFound):
        await metadata_store.delete("photos", record.id)
    with pytest.raises(NotFound):
        await metadata_store.delete("elsewhere", other.id)
    assert await metadata_store.get("photos", other.id) == other
    # The id is free again.
    await metadata_store.insert(record)


async def test_delete_records(metadata_store: MetadataStore) -> None:
    await insert_all(metadata_store, [make_record("a") for _ in range(3)] + [make_record("b") for _ in range(2)])
    assert await metadata_store.delete_records("a") == 3
    assert await metadata_store.count("a", ()) == 0
    assert await metadata_store.count("b", ()) == 2
    assert await metadata_store.delete_records("a") == 0
    assert await metadata_store.delete_records("unknown") == 0


async def test_records_streams_everything_in_path_order(metadata_store: MetadataStore) -> None:
    collections = itertools.cycle(["alpha", "beta", "alpha.b", "alpha-b"])
    records = [make_record(next(collections), time=at(i % 7), size=i) for i in range(520)]
    await insert_all(metadata_store, records)

    streamed = [record async for record in metadata_store.records()]
    assert [r.path for r in streamed] == sorted(r.path for r in records)
    assert sorted(streamed, key=lambda r: r.path) == sorted(records, key=lambda r: r.path)

    alpha = [record async for record in metadata_store.records("alpha")]
    assert [r.path for r in alpha] == sorted(r.path for r in records if r.collection == "alpha")
    assert [record async for record in metadata_store.records("missing")] == []


# --- the collection registry ------------------------------------------------------------------


async def test_ensure_collection_is_idempotent(metadata_store: MetadataStore) -> None:
    generation = await metadata_store.ensure_collection("photos")
    assert isinstance(generation, str) and generation
    assert await metadata_store.ensure_collection("photos") == generation
    results = await asyncio.gather(*(metadata_store.ensure_collection("photos") for _ in range(5)))
    assert set(results) == {generation}
    other = await metadata_store.ensure_collection("other")
    assert other != generation
    assert await metadata_store.collection_generation("photos") == generation
    assert await metadata_store.collection_generation("unknown") is None
    assert await metadata_store.collections() == ["other", "photos"]


async def test_concurrent_first_registrations_agree(metadata_config: Config) -> None:
    # As the first uploads into a new collection on two replicas: one generation for all.
    async with open_metadata_store(metadata_config) as one, open_metadata_store(metadata_config) as other:
        for name in ("fresh", "fresh-2", "fresh-3"):
            generations = await asyncio.gather(*(store.ensure_collection(name) for store in [one, other] * 8))
            assert len(set(generations)) == 1
            record = make_record(name)
            await one.insert(record)
            assert await other.get(name, record.id) == record


async def test_drop_lifecycle(metadata_store: MetadataStore) -> None:
    generation = await metadata_store.ensure_collection("photos")
    await metadata_store.ensure_collection("kept")

    assert await metadata_store.begin_drop("photos") is True
    with pytest.raises(Conflict):
        await metadata_store.ensure_collection("photos")
    assert await metadata_store.collection_generation("photos") is None
    assert await metadata_store.collections() == ["kept"]
    assert await metadata_store.collections(include_dropping=True) == ["kept", "photos"]
    with pytest.raises(NotFound):
        await metadata_store.collection_stats("photos")

    await metadata_store.finish_drop("photos")
    assert await metadata_store.collections(include_dropping=True) == ["kept"]
    reborn = await metadata_store.ensure_collection("photos")
    assert reborn != generation
    assert await metadata_store.collection_generation("photos") == reborn
    assert await metadata_store.collections() == ["kept", "photos"]

    assert await metadata_store.begin_drop("never-registered") is False
    await metadata_store.finish_drop("never-registered")


async def test_collection_stats(metadata_store: MetadataStore) -> None:
    await metadata_store.ensure_collection("photos")
    await metadata_store.ensure_collection("empty")
    newest = datetime(2030, 1, 1, tzinfo=timezone.utc)
    records = [
        make_record(size=100, updated_at=BASE),
        make_record(size=250, updated_at=newest),
        make_record(size=7, updated_at=at(5)),
    ]
    await insert_all(metadata_store, [*records, make_record("elsewhere", size=10_000)])

    stats = await metadata_store.collection_stats("photos")
    assert (stats.name, stats.documents, stats.bytes, stats.updated_at) == ("photos", 3, 357, newest)
    assert stats.created_at.utcoffset() == timedelta(0)
    assert stats.updated_at.utcoffset() == timedelta(0)

    empty = await metadata_store.collection_stats("empty")
    assert (empty.documents, empty.bytes) == (0, 0)
    assert empty.updated_at == empty.created_at

    with pytest.raises(NotFound):
        await metadata_store.collection_stats("unknown")


async def test_ping(metadata_store: MetadataStore) -> None:
    await metadata_store.ping()


# --- sorting by properties, ids and hashes (issue 9) ------------------------------------------

from gateway.api.params import sort_values  # noqa: E402
from gateway.metadata.query import ID_FIELD, SHA256_FIELD, Condition, SortCursor, SortKey, sort_position  # noqa: E402

# One value of each kind, several per bracket; "-" marks a record without the property.
MIXED_VALUES: list[Any] = [
    "-", None, 5, 2.5, -1, 2**53, 0, "", "A", "b", "é", "東京", {"a": 1}, {}, [3, "z"], [], ["a"], True, False, "-", None, 5,
]


def reference_order(records: list[ImageRecord], keys: tuple[SortKey, ...]) -> list[str]:
    """The documented order (gateway.metadata.query.sort_position), computed here independently
    of any backend: brackets, then values within them, then the id in the last key's direction."""

    def component(record: ImageRecord, key: SortKey) -> tuple[Any, ...]:
        if key.field == "time":
            return (record.time,)
        if key.field == ID_FIELD:
            return (record.id,)
        bracket, value = sort_position(key.field in record.properties, record.properties.get(key.field))
        return (0 if bracket is None else bracket, 0 if value is None else value)

    ordered = list(records)
    ordered.sort(key=lambda r: r.id, reverse=keys[-1].descending)
    for key in reversed(keys):  # stable sorts, least significant first
        ordered.sort(key=lambda r, k=key: component(r, k), reverse=key.descending)
    return ids(ordered)


@pytest.fixture
async def mixed(metadata_store: MetadataStore) -> list[ImageRecord]:
    records = []
    for index, value in enumerate(MIXED_VALUES):
        properties: dict[str, Any] = {"score": index % 3}
        if value != "-":
            properties["k"] = value
        records.append(make_record(time=at(index % 4), properties=properties))
    await insert_all(metadata_store, records[::-1])
    await metadata_store.insert(make_record("elsewhere", properties={"k": 1}))
    return records


SORTS = {
    "k-asc": (SortKey("k"),),
    "k-desc": (SortKey("k", True),),
    "score-desc-time-asc": (SortKey("score", True), SortKey("time")),
    "score-k-time": (SortKey("score"), SortKey("k", True), SortKey("time")),
    "id-desc": (SortKey(ID_FIELD, True),),
    "missing-everywhere": (SortKey("nowhere"),),
}


@pytest.mark.parametrize("sort", SORTS.values(), ids=SORTS.keys())
async def test_sort_by_properties_follows_the_documented_order(metadata_store: MetadataStore, mixed: list[ImageRecord], sort: tuple[SortKey, ...]) -> None:
    found = await metadata_store.find("photos", ListQuery(limit=100, sort=sort))
    assert ids(found) == reference_order(mixed, sort)


async def test_mixed_types_sort_by_bracket(metadata_store: MetadataStore, mixed: list[ImageRecord]) -> None:
    """Spelled out once: missing/null < numbers < strings < objects < arrays < booleans."""
    found = await metadata_store.find("photos", ListQuery(limit=100, sort=(SortKey("k"),)))
    brackets = [sort_position("k" in r.properties, r.properties.get("k"))[0] or 0 for r in found]
    assert brackets == sorted(brackets) and len(set(brackets)) == 6
    values = [r.properties.get("k") for r in found]
    assert [type(v) for v in values[:4]] == [type(None)] * 4  # two records without k, two with null
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    assert numbers == sorted(numbers) == [-1, 0, 2.5, 5, 5, 2**53]
    assert isinstance(values[-1], bool) and isinstance(values[-2], bool)
    assert [r.properties["k"] for r in found if isinstance(r.properties.get("k"), str)] == ["", "A", "b", "é", "東京"]
    assert values[-2:] == [False, True]


@pytest.mark.parametrize("sort", SORTS.values(), ids=SORTS.keys())
@pytest.mark.parametrize("page_size", [1, 3, 7])
async def test_sorted_keyset_pages_cover_everything_once(
    metadata_store: MetadataStore, mixed: list[ImageRecord], sort: tuple[SortKey, ...], page_size: int
) -> None:
    seen: list[ImageRecord] = []
    after = None
    for _ in range(len(mixed) + 2):
        page = await metadata_store.find("photos", ListQuery(limit=page_size, sort=sort, after_key=after))
        seen += page
        if len(page) < page_size:
            break
        after = SortCursor(sort_values(page[-1], sort), page[-1].id)
    assert ids(seen) == reference_order(mixed, sort)


async def test_sorted_pages_with_a_filter_and_skip(metadata_store: MetadataStore, mixed: list[ImageRecord]) -> None:
    sort = (SortKey("k", True),)
    matching = [r for r in mixed if r.properties["score"] == 1]
    found = await metadata_store.find("photos", ListQuery(parse_filter('{"score": 1}'), limit=100, sort=sort))
    assert ids(found) == reference_order(matching, sort)
    skipped = await metadata_store.find("photos", ListQuery(parse_filter('{"score": 1}'), limit=2, skip=1, sort=sort))
    assert ids(skipped) == reference_order(matching, sort)[1:3]


async def test_sort_sees_replaced_properties(metadata_store: MetadataStore) -> None:
    low, high = make_record(properties={"k": 1}), make_record(properties={"k": 2})
    await insert_all(metadata_store, [low, high])
    await metadata_store.replace_properties(low.with_properties({"k": "text"}, at(9)), low.version)
    found = await metadata_store.find("photos", ListQuery(limit=10, sort=(SortKey("k"),)))
    assert ids(found) == [high.id, low.id]


async def test_id_and_sha256_conditions(metadata_store: MetadataStore, timeline: list[ImageRecord]) -> None:
    a, b, c = timeline[0], timeline[4], timeline[8]

    async def found(*conditions: Condition) -> set[str]:
        return set(ids(await metadata_store.find("photos", ListQuery(conditions, limit=100))))

    everything = set(ids(timeline))
    assert await found(Condition(ID_FIELD, "$eq", a.id)) == {a.id}
    assert await found(Condition(ID_FIELD, "$ne", a.id)) == everything - {a.id}
    assert await found(Condition(ID_FIELD, "$in", [a.id, b.id, "0" * 24])) == {a.id, b.id}
    assert await found(Condition(ID_FIELD, "$nin", [a.id, b.id])) == everything - {a.id, b.id}
    assert await found(Condition(ID_FIELD, "$in", [])) == set()
    assert await found(Condition(ID_FIELD, "$nin", [])) == everything
    assert await found(Condition(ID_FIELD, "$in", [a.id, c.id]), *parse_filter('{"even": true}')) == {r.id for r in (a, c) if r.properties["even"]}
    assert await found(Condition(SHA256_FIELD, "$eq", b.sha256)) == {b.id}
    assert await found(Condition(SHA256_FIELD, "$eq", "0" * 64)) == set()
    assert await metadata_store.count("photos", (Condition(ID_FIELD, "$in", [a.id, b.id]),)) == 2
    # Another collection's record with the same id is not found here.
    assert await metadata_store.find("elsewhere", ListQuery((Condition(ID_FIELD, "$eq", a.id),))) == []


# --- writes by filter (gateway.service.bulk) on every metadata backend --------------------------------


@pytest.fixture
async def bulk_service(metadata_store: MetadataStore, tmp_path: Any) -> Any:
    from gateway.service import ImageService
    from gateway.storage import open_blob_store
    from tests.helpers import make_config

    config = make_config(tmp_path)
    async with open_blob_store(config) as blobs:
        yield ImageService(blobs, metadata_store, config)


async def test_bulk_patch_pages_by_id_and_is_idempotent(metadata_store: MetadataStore, bulk_service: Any) -> None:
    from gateway.service import bulk

    records = [make_record(time=at(i % 3), properties={"group": i % 2, "n": i}) for i in range(7)]
    await insert_all(metadata_store, records)
    await metadata_store.insert(make_record("elsewhere", properties={"group": 0}))
    group = parse_filter('{"group": 0}')
    targets = sorted(r.id for r in records if r.properties["group"] == 0)
    seen: list[str] = []
    after = None
    while True:
        result = await bulk.patch_matching(bulk_service, "photos", group, {"tag": "zero", "n": None}, limit=3, after_id=after)
        assert result.matched == len(targets)
        seen.append(result.last_id or "")
        if not result.more:
            break
        after = result.last_id
    assert seen == [targets[2], targets[3]]
    for record in records:
        stored = await metadata_store.get("photos", record.id)
        expected = {"group": 0, "tag": "zero"} if record.properties["group"] == 0 else record.properties
        assert stored.properties == expected
    again = await bulk.patch_matching(bulk_service, "photos", group, {"tag": "zero", "n": None}, limit=10)
    assert (again.changed, again.unchanged, again.more) == (0, len(targets), False)
    assert (await metadata_store.get("elsewhere", (await metadata_store.find("elsewhere", ListQuery()))[0].id)).properties == {"group": 0}


async def test_bulk_delete_caps_each_call_and_keeps_to_the_filter(metadata_store: MetadataStore, bulk_service: Any) -> None:
    from gateway.service import bulk

    records = [make_record(time=at(i), properties={"drop": i < 5}) for i in range(8)]
    await insert_all(metadata_store, records)
    drop = parse_filter('{"drop": true}')
    first = await bulk.delete_matching(bulk_service, "photos", drop, limit=3)
    assert (first.matched, first.changed, first.more) == (5, 3, True)
    second = await bulk.delete_matching(bulk_service, "photos", drop, limit=3)
    assert (second.matched, second.changed, second.more) == (2, 2, False)
    left = await metadata_store.find("photos", ListQuery(limit=100))
    assert sorted(ids(left)) == sorted(r.id for r in records[5:])
    by_id = (Condition(ID_FIELD, "$in", [records[5].id, records[6].id]),)
    assert (await bulk.delete_matching(bulk_service, "photos", by_id, limit=10)).changed == 2
    assert ids(await metadata_store.find("photos", ListQuery(limit=100))) == [records[7].id]


async def test_bulk_writes_keep_to_the_callers_scope(metadata_store: MetadataStore, bulk_service: Any) -> None:
    from gateway.service import bulk
    from gateway.service import Scope

    alice = [make_record(time=at(i), owner="alice", properties={"n": i}) for i in range(3)]
    bob = [make_record(time=at(i), owner="bob", properties={"n": i}) for i in range(2)]
    await insert_all(metadata_store, [*alice, *bob])
    everything = parse_filter('{"n": {"$gte": 0}}')
    patched = await bulk.patch_matching(bulk_service, "photos", everything, {"seen": True}, limit=10, scope=Scope("alice"))
    assert (patched.matched, patched.changed, patched.more) == (3, 3, False)
    stored = {r.id: r.properties for r in await metadata_store.find("photos", ListQuery(limit=100))}
    assert all(stored[r.id] == {"n": r.properties["n"], "seen": True} for r in alice)
    assert all(stored[r.id] == r.properties for r in bob)
    deleted = await bulk.delete_matching(bulk_service, "photos", (), limit=10, scope=Scope("bob"))
    assert (deleted.matched, deleted.changed, deleted.more) == (2, 2, False)
    assert sorted(ids(await metadata_store.find("photos", ListQuery(limit=100)))) == sorted(r.id for r in alice)
    # Asked by id for someone else's images, an owner's call finds none of them.
    theirs = (Condition(ID_FIELD, "$in", [r.id for r in alice]),)
    assert (await bulk.delete_matching(bulk_service, "photos", theirs, limit=10, scope=Scope("carol"))).matched == 0
    assert len(await metadata_store.find("photos", ListQuery(limit=100))) == 3


async def test_orientation_round_trips(metadata_store: MetadataStore) -> None:
    from dataclasses import replace

    turned = replace(make_record(), orientation=6)
    plain = make_record()
    await insert_all(metadata_store, [turned, plain])
    assert (await metadata_store.get("photos", turned.id)).orientation == 6
    assert (await metadata_store.get("photos", plain.id)).orientation is None
    found = {r.id: r.orientation for r in await metadata_store.find("photos", ListQuery())}
    assert found == {turned.id: 6, plain.id: None}


# --- uploads in progress and idempotency keys ------------------------------------------------


def pending_upload(upload_id: str, expires: datetime, **changes: Any) -> Any:
    from gateway.metadata.base import PendingUpload

    values: dict[str, Any] = {
        "id": upload_id, "kind": "tus", "collection": "photos", "owner": "u1", "length": 100,
        "info": {"filename": "a.png", "properties": {"k": [1, "x"]}}, "staged": {"id": upload_id, "size": 0, "store": {"parts": [{"PartNumber": 1, "ETag": '"e"'}]}},
        "created_at": BASE, "expires_at": expires,
    }
    values.update(changes)
    return PendingUpload(**values)


async def test_pending_uploads_round_trip_and_conditional_replace(metadata_store: MetadataStore) -> None:
    from dataclasses import replace

    upload = pending_upload("a" * 32, at(10), lock_expires=at(5), lock="t")
    await metadata_store.insert_upload(upload)
    with pytest.raises(Conflict):
        await metadata_store.insert_upload(upload)
    assert await metadata_store.get_upload(upload.id) == upload
    changed = replace(upload, staged={**upload.staged, "size": 50}, version=2, lock=None, lock_expires=None)
    assert await metadata_store.replace_upload(changed, 1) is True
    assert await metadata_store.replace_upload(replace(changed, version=3), 1) is False  # a stale version
    assert await metadata_store.get_upload(upload.id) == changed
    await metadata_store.delete_upload(upload.id)
    await metadata_store.delete_upload(upload.id)  # twice is fine
    with pytest.raises(NotFound):
        await metadata_store.get_upload(upload.id)
    assert await metadata_store.replace_upload(changed, 2) is False


async def test_pending_uploads_by_expiry(metadata_store: MetadataStore) -> None:
    for n, minutes in enumerate((30, 10, 20)):
        await metadata_store.insert_upload(pending_upload(f"{n:032x}", at(minutes)))
    assert [u.expires_at for u in await metadata_store.pending_uploads()] == [at(10), at(20), at(30)]
    assert [u.expires_at for u in await metadata_store.pending_uploads(expired_before=at(25))] == [at(10), at(20)]
    assert len(await metadata_store.pending_uploads(limit=1)) == 1


async def test_idempotency_claims(metadata_store: MetadataStore) -> None:
    from dataclasses import replace

    from gateway.metadata.base import IdempotencyEntry, utcnow

    now = utcnow()
    entry = IdempotencyEntry("s1", "fp", "r1", "in_flight", now + timedelta(minutes=1), now + timedelta(hours=1))
    assert await metadata_store.claim_idempotency(entry) is None
    assert await metadata_store.claim_idempotency(replace(entry, resource_id="r2")) == entry  # the first stands
    done = replace(entry, state="done", answer={"id": "x", "n": [1, 2]}, version=2)
    assert await metadata_store.replace_idempotency(done, 1) is True
    assert await metadata_store.replace_idempotency(replace(done, version=3), 1) is False
    assert await metadata_store.claim_idempotency(entry) == done
    # An expired entry is replaced as if absent, and purged.
    old = IdempotencyEntry("s2", "fp", "r1", "done", now, now - timedelta(seconds=1))
    assert await metadata_store.claim_idempotency(old) is None
    fresh = replace(old, expires_at=now + timedelta(hours=1), resource_id="r9")
    assert await metadata_store.claim_idempotency(fresh) is None
    assert (await metadata_store.claim_idempotency(old)).resource_id == "r9"  # type: ignore[union-attr]
    assert await metadata_store.purge_idempotency(now + timedelta(hours=2)) == 2
