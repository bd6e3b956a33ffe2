"""Opening the SQLite files the embedded default keeps (metadata, events) safely from several
processes at once: workers of `--workers` and replicas sharing a data directory."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self, TypeVar

from gateway.errors import Unavailable

T = TypeVar("T")

_WAL_SWITCH_SECONDS = 10.0


def connect(path: Path) -> sqlite3.Connection:
    """A connection in WAL mode, autocommit (explicit BEGIN), with a busy timeout from the start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
    # Switching a new database to WAL needs exclusive access, and SQLite answers "locked" at once,
    # without its busy handler, when another process is switching it too: wait for that one.
    deadline = time.monotonic() + _WAL_SWITCH_SECONDS
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                db.close()
                raise
            time.sleep(0.02)
    db.execute("PRAGMA synchronous=NORMAL")
    return db


class SqliteThread:
    """One SQLite connection, used only from one dedicated thread, so the event loop never
    blocks and the connection is never shared between threads. Subclasses open it in `_open`
    (run on that thread, setting `_db`) and run their statements through `_run`, which turns
    SQLite's errors into `Unavailable`."""

    _thread_name = "sqlite"

    def __init__(self, path: Path):
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._thread_name)
        self._db: sqlite3.Connection | None = None

    async def __aenter__(self) -> Self:
        try:
            await self._run(self._open)
        except BaseException:
            self._executor.shutdown(wait=True)
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._run(self._close)
        self._executor.shutdown(wait=True)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            raise Unavailable(f"the metadata database failed ({exc.__class__.__name__})", code="database_unavailable") from exc

    def _open(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
