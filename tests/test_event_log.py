"""The shared event log under concurrent appends, on SQLite and on FerretDB."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.events import open_event_log
from gateway.metadata.base import ImageRecord, utcnow
from tests.helpers import METADATA_BACKENDS, make_config, metadata_overrides


def record(index: int) -> ImageRecord:
    now = utcnow()
    return ImageRecord(
        collection="events", id=f"{index:024x}", image="a.png", time=now, updated_at=now, content_type="image/png",
        format="png", width=1, height=1, size=1, sha256="0" * 64, path=f"events/{index:024x}.png",
    )


@pytest.mark.parametrize("backend", METADATA_BACKENDS)
async def test_concurrent_appends_each_get_their_own_number(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> None:
    config = make_config(tmp_path, metadata_overrides(request, backend))
    async with open_event_log(config) as log:
        start = await log.latest()
        numbers = await asyncio.gather(*(log.append("upload", record(i)) for i in range(40)))
        assert len(set(numbers)) == 40
        events = await log.read_after(start, 100)
        assert sorted(e.record.id for e in events) == sorted(record(i).id for i in range(40))
        assert [e.seq for e in events] == sorted(numbers)


@pytest.mark.parametrize("backend", METADATA_BACKENDS)
async def test_batches_from_two_replicas_interleave_without_losses(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> None:
    """Two replicas (two log clients on one database) write batches at once: every event lands,
    each with its own number."""
    config = make_config(tmp_path, metadata_overrides(request, backend))
    async with open_event_log(config) as first, open_event_log(config) as second:
        start = await first.latest()
        batches = [[("upload", record(b * 10 + i)) for i in range(10)] for b in range(6)]
        await asyncio.gather(*(log.append_many(batch) for log, batch in zip([first, second] * 3, batches)))
        events = await first.read_after(start, 1000)
        assert sorted(e.record.id for e in events) == sorted(record(i).id for i in range(60))
        assert len({e.seq for e in events}) == 60
