"""The `EventLog` contract, run against every backend through the `event_log` fixture (the log
as the app opens it, beside its metadata store)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from gateway.config import Config
from gateway.errors import Unavailable
from gateway.metadata import open_metadata
from gateway.metadata.base import EventFeed, EventLog, ImageRecord
from tests.protocols import assert_implements

BASE = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=timezone.utc)


def record(index: int, **changes: object) -> ImageRecord:
    values: dict[str, object] = dict(
        collection="events", id=f"{index:024x}", image="a.png", time=BASE, updated_at=BASE, content_type="image/png",
        format="png", width=1, height=1, size=1, sha256="0" * 64, path=f"events/{index:024x}.png",
    )
    return ImageRecord(**(values | changes))  # type: ignore[arg-type]


async def test_the_backend_implements_the_protocol(event_log: EventLog) -> None:
    assert_implements(event_log, EventLog)


async def test_a_new_log_is_empty(event_log: EventLog) -> None:
    assert await event_log.latest() == 0
    assert await event_log.read_after(0, 10) == []


async def test_events_come_back_in_order_with_their_records_whole(event_log: EventLog) -> None:
    full = record(
        1, properties={"title": "Grüße 東京", "tags": ["a", 1, True, None], "ratio": 0.5, "nested": {"k": []}},
        owner="alice", version=3, updated_at=BASE.replace(year=2025),
    )
    first = await event_log.append("upload", full)
    second = await event_log.append("update", record(2))
    third = await event_log.append("delete", record(3))
    assert first < second < third
    assert await event_log.latest() == third
    events = await event_log.read_after(0, 10)
    assert [(e.seq, e.kind, e.record.id) for e in events] == [(first, "upload", full.id), (second, "update", record(2).id), (third, "delete", record(3).id)]
    assert events[0].record == full


async def test_read_after_starts_past_the_number_and_stops_at_the_limit(event_log: EventLog) -> None:
    numbers = [await event_log.append("upload", record(i)) for i in range(5)]
    assert [e.seq for e in await event_log.read_after(numbers[1], 2)] == numbers[2:4]
    assert [e.seq for e in await event_log.read_after(numbers[1], 100)] == numbers[2:]
    assert await event_log.read_after(numbers[-1], 100) == []


async def test_a_batch_is_numbered_in_the_order_given(event_log: EventLog) -> None:
    start = await event_log.latest()
    await event_log.append_many([("upload", record(i)) for i in range(20)])
    events = await event_log.read_after(start, 100)
    assert [e.record.id for e in events] == [record(i).id for i in range(20)]
    assert await event_log.latest() == events[-1].seq


async def test_concurrent_appends_each_get_their_own_number(event_log: EventLog) -> None:
    start = await event_log.latest()
    numbers = await asyncio.gather(*(event_log.append("upload", record(i)) for i in range(40)))
    assert len(set(numbers)) == 40
    events = await event_log.read_after(start, 100)
    assert sorted(e.record.id for e in events) == sorted(record(i).id for i in range(40))
    assert [e.seq for e in events] == sorted(numbers)


async def test_batches_from_two_replicas_interleave_without_losses(event_log: EventLog, metadata_config: Config) -> None:
    """Two replicas (two opened logs on one database) write batches at once: every event lands,
    each with its own number."""
    async with open_metadata(metadata_config) as (_store, second):
        start = await event_log.latest()
        batches = [[("upload", record(b * 10 + i)) for i in range(10)] for b in range(6)]
        await asyncio.gather(*(log.append_many(batch) for log, batch in zip([event_log, second] * 3, batches)))
        events = await second.read_after(start, 1000)
        assert sorted(e.record.id for e in events) == sorted(record(i).id for i in range(60))
        assert len({e.seq for e in events}) == 60


async def test_the_listeners_lease_only_grows_and_is_shared_by_replicas(event_log: EventLog, metadata_config: Config) -> None:
    """Writers skip events while nobody follows: the lease a replica holds is what every replica
    reads, and a shorter lease (another replica's) never cuts it."""
    assert await event_log.listening_until() == 0
    await event_log.listen_until(2_000_000_000.5)
    async with open_metadata(metadata_config) as (_store, second):
        assert await second.listening_until() == 2_000_000_000.5
        await asyncio.gather(second.listen_until(1_900_000_000.0), second.listen_until(1_000.0))
        assert await event_log.listening_until() == 2_000_000_000.5
        await second.listen_until(2_100_000_000.0)
    assert await event_log.listening_until() == 2_100_000_000.0


async def test_follow_pushes_what_is_appended_or_says_there_is_no_feed(event_log: EventLog) -> None:
    # Neither SQLite nor FerretDB v1 pushes; a database without change streams must answer
    # None at once (polling follows), never raise its driver's error.
    feed: EventFeed | None = await event_log.follow()
    if feed is None:
        return
    try:
        seq = await event_log.append("upload", record(1))
        event = await asyncio.wait_for(anext(feed), timeout=30)
        assert (event.seq, event.record) == (seq, record(1))
    finally:
        await feed.aclose()


async def test_a_lost_connection_is_unavailable(event_log: EventLog) -> None:
    await sever(event_log)
    with pytest.raises(Unavailable):
        await event_log.append("upload", record(1))
    with pytest.raises(Unavailable):
        await event_log.read_after(0, 10)


async def sever(log: EventLog) -> None:
    """Close the log's connection under it, as a database that went away would."""
    from gateway.metadata.sqlite_events import SqliteEventLog

    if isinstance(log, SqliteEventLog):
        connection = log._db
        assert connection is not None
        await log._run(connection.close)
        return
    from gateway.metadata.mongo_events import MongoEventLog

    assert isinstance(log, MongoEventLog)
    await log._events.database.client.close()
