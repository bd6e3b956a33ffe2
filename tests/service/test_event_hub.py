"""EventHub over a log that pushes (a change stream). The databases the tiers run (SQLite,
FerretDB v1) only poll, so the push path is driven by an in-memory log."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from gateway.service.events import EventHub
from gateway.metadata.base import Event, ImageRecord

pytestmark = pytest.mark.embedded

NOW = datetime(2024, 5, 1, tzinfo=timezone.utc)


def event(seq: int, collection: str = "c") -> Event:
    record = ImageRecord(
        collection=collection, id=f"{seq:024x}", image="a.png", time=NOW, updated_at=NOW, content_type="image/png",
        format="png", width=1, height=1, size=1, sha256="0" * 64, path=f"{collection}/{seq:024x}.png",
    )
    return Event(seq, "upload", record)


class PushingLog:
    """An event log whose `follow` hands out a feed fed by `push`."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.closed = asyncio.Event()

    async def follow(self) -> PushingLog:
        return self

    async def listen_until(self, until: float) -> None:
        self.lease = max(getattr(self, "lease", 0.0), until)

    async def listening_until(self) -> float:
        return getattr(self, "lease", 0.0)

    def __aiter__(self) -> PushingLog:
        return self

    async def __anext__(self) -> Event:
        return await self.queue.get()

    async def aclose(self) -> None:
        self.closed.set()


async def test_a_pushed_feed_is_delivered_and_closed_when_nobody_listens() -> None:
    log = PushingLog()
    hub = EventHub(log, poll_interval=0.01)  # type: ignore[arg-type]
    runner = asyncio.create_task(hub.run())
    try:
        one = hub.subscribe("c")
        other = hub.subscribe("elsewhere")
        await asyncio.wait_for(hub.started(), timeout=10)
        assert hub.mode == "change_stream"
        log.queue.put_nowait(event(1))
        log.queue.put_nowait(event(2, "elsewhere"))
        assert (await asyncio.wait_for(one.queue.get(), timeout=10)).seq == 1
        assert (await asyncio.wait_for(other.queue.get(), timeout=10)).seq == 2
        hub.unsubscribe(one)
        hub.unsubscribe(other)
        log.queue.put_nowait(event(3))
        await asyncio.wait_for(log.closed.wait(), timeout=10)
        assert hub.mode == "idle"
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
