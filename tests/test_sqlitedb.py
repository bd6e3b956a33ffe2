"""Several processes opening one new SQLite database at once, as `--workers` does at start-up."""

from __future__ import annotations

import asyncio
import multiprocessing
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.metadata.sqlite_events import SqliteEventLog
from gateway.metadata.sqlite import SqliteMetadataStore

pytestmark = pytest.mark.embedded


def _open_both(folder: str, barrier: Any) -> None:
    barrier.wait(timeout=30)

    async def main() -> None:
        async with SqliteMetadataStore(Path(folder) / "metadata.sqlite3") as store, SqliteEventLog(Path(folder) / "events.sqlite3", timedelta(hours=1)):
            await store.ping()

    asyncio.run(main())


@pytest.mark.parametrize("round_", range(20))
def test_processes_opening_a_new_database_together_all_start(tmp_path: Path, round_: int) -> None:
    # Forked and released together by a barrier, so the opens really overlap.
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(8)
    processes = [context.Process(target=_open_both, args=(str(tmp_path), barrier)) for _ in range(8)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [process.exitcode for process in processes] == [0] * 8
